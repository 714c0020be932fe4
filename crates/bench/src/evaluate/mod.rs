//! `dida bench report`: the evaluation report, rebuilt from one run's results
//! (SPEC §7; issue 9, item 4).
//!
//! `scripts/evaluate.sh` runs every benchmark with `--json` and a few `dida faults`
//! runs, leaving their output in one directory (`target/evaluation`); this command
//! reads that directory, draws the plots as SVG files and writes the report, so that
//! the report always shows one run of the current code and nothing in it is copied by
//! hand. Modules, one job each:
//! - `input`: reading the directory back into typed rows;
//! - `analysis`: ratios to the baselines, best and worst workloads, settings series,
//!   what a crash did;
//! - `figures`: which plots, from which rows;
//! - `plot`: drawing line charts as SVG (`plotters`);
//! - `markdown`: the document, generated sections followed by the hand-written
//!   method text (`docs/evaluation-method.md`).

mod analysis;
mod figures;
mod input;
mod markdown;
mod plot;

use std::fs;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

pub(crate) use input::parse_redis_benchmark;
use input::Evaluation;

/// Flags of `dida bench report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The directory scripts/evaluate.sh left the benchmarks' results in.
    #[arg(long, default_value = "target/evaluation")]
    input: PathBuf,
    /// Where to write evaluation.md; the plots go to its img/ subdirectory.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// The hand-written method text copied at the end of the report (default:
    /// evaluation-method.md in --out).
    #[arg(long)]
    method: Option<PathBuf>,
}

/// Runs `dida bench report`: reads the results, draws the plots, writes the report,
/// and prints what it wrote.
pub(crate) fn run(args: ReportArgs) -> anyhow::Result<()> {
    let evaluation = Evaluation::read(&args.input)?;
    let method_path = args
        .method
        .clone()
        .unwrap_or_else(|| args.out.join("evaluation-method.md"));
    let method = fs::read_to_string(&method_path).with_context(|| {
        format!(
            "cannot read the method text {} (it is part of the repository)",
            method_path.display()
        )
    })?;
    let images = args.out.join(markdown::IMAGE_DIR);
    let drawn = draw(&evaluation, &images)?;
    let document = markdown::document(&evaluation, &drawn, &method);
    let report = args.out.join("evaluation.md");
    fs::write(&report, document).with_context(|| format!("cannot write {}", report.display()))?;
    println!("wrote {}", report.display());
    for file in &drawn {
        println!("wrote {}", images.join(file).display());
    }
    Ok(())
}

/// Draws every figure the run has data for into `dir`, and removes the figures of
/// earlier runs it has none for, so no stale plot survives. Returns the files drawn.
fn draw(evaluation: &Evaluation, dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut drawn = Vec::new();
    for figure in figures::all(evaluation) {
        figure.write(dir)?;
        drawn.push(figure.file.clone());
    }
    for file in figures::ALL_FILES {
        let path = dir.join(file);
        if !drawn.iter().any(|d| d == file) && path.exists() {
            fs::remove_file(&path)
                .with_context(|| format!("cannot remove the stale {}", path.display()))?;
        }
    }
    Ok(drawn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_written_from_a_directory_of_results() {
        let input = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let storage = r#"{"event":"setup","benchmark":"storage","cluster":"local","nodes":5,"replication_factor":3,"write_acks":1,"gossip_delay_ms":0,"target":"s1","value_size":16,"keys":1000,"duration_s":3.0,"warmup_s":0.5,"cores":2,"redis":"none","durability":"memory"}
{"event":"measurement","workload":"ping","concurrency":1,"ops_per_sec":10000.0,"p50_us":90,"p99_us":150,"errors":0,"percentiles":[[0.0,40],[0.5,90],[0.99,150],[1.0,900]]}
{"event":"measurement","workload":"read","concurrency":1,"ops_per_sec":9000.0,"p50_us":95,"p99_us":160,"errors":0,"percentiles":[[0.0,41],[0.5,95],[0.99,160],[1.0,700]]}
{"event":"measurement","workload":"ping","concurrency":4,"ops_per_sec":20000.0,"p50_us":190,"p99_us":350,"errors":0,"percentiles":[[0.0,40],[0.5,190],[0.99,350],[1.0,900]]}
{"event":"measurement","workload":"read","concurrency":4,"ops_per_sec":18000.0,"p50_us":195,"p99_us":360,"errors":0,"percentiles":[[0.0,41],[0.5,195],[0.99,360],[1.0,700]]}
"#;
        fs::write(input.path().join("storage.jsonl"), storage).unwrap();
        fs::write(input.path().join("machine.txt"), "commit: abc\n").unwrap();
        fs::write(
            out.path().join("evaluation-method.md"),
            "## Method\n\nBy hand.\n",
        )
        .unwrap();
        // A plot of an earlier run this one has no data for.
        fs::create_dir_all(out.path().join("img")).unwrap();
        fs::write(out.path().join("img").join(figures::CHAIN), "<svg/>").unwrap();

        run(ReportArgs {
            input: input.path().to_path_buf(),
            out: out.path().to_path_buf(),
            method: None,
        })
        .unwrap();

        let report = fs::read_to_string(out.path().join("evaluation.md")).unwrap();
        assert!(report.starts_with("# Evaluation\n"));
        assert!(report.ends_with("## Method\n\nBy hand.\n"));
        assert!(report.contains("| 4 | 0.90× |"), "{report}");
        for file in [
            figures::STORAGE_THROUGHPUT,
            figures::STORAGE_LATENCY,
            figures::LATENCY_CDF,
        ] {
            let svg = fs::read_to_string(out.path().join("img").join(file)).unwrap();
            assert!(svg.contains("<svg"), "{file}");
            assert!(
                report.contains(&format!("(img/{file})")),
                "{file} not linked"
            );
        }
        assert!(!out.path().join("img").join(figures::CHAIN).exists());
    }

    #[test]
    fn a_missing_method_text_or_input_is_an_error() {
        let input = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let args = |input: PathBuf| ReportArgs {
            input,
            out: out.path().to_path_buf(),
            method: None,
        };
        let error = run(args(input.path().to_path_buf())).unwrap_err();
        assert!(
            format!("{error:#}").contains("evaluation-method.md"),
            "{error:#}"
        );
        let error = run(args(input.path().join("missing"))).unwrap_err();
        assert!(format!("{error:#}").contains("run scripts/evaluate.sh first"));
    }
}
