//! The operators each worker can run, kept current off the submit path.
//!
//! A submit must be refused before anything runs if some worker cannot run one of
//! its operators (every worker may be assigned any operator). Asking every worker on
//! every submit made a submit cost a fan-out of RPCs; instead the scheduler keeps a
//! catalogue that a background task refreshes every `operator_refresh`, and a submit
//! checks against it with no I/O. Only a submit the catalogue cannot accept — an
//! operator some worker is not known to run, or a worker never heard from — asks the
//! workers again before deciding, so an operator added to a worker is runnable at
//! once and an unknown name gets a current answer. An operator removed from a worker
//! is noticed within one refresh period (until then, the execution that uses it fails
//! on that worker with an "unknown operator" outcome).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dida_proto::execution::worker_client::WorkerClient;
use dida_proto::execution::ListOperatorsRequest;
use dida_proto::transport::NodeChannel;
use tonic::Status;
use tracing::debug;

/// What the catalogue says about a submit's operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gap {
    /// Workers (indices) whose operators were never learned.
    UnknownWorkers(Vec<usize>),
    /// `operator` is missing on these workers (indices); on all of them if
    /// `everywhere`.
    Missing {
        operator: String,
        workers: Vec<usize>,
        everywhere: bool,
    },
}

/// The operators of every worker, as last learned (`None`: never learned).
#[derive(Debug)]
pub(crate) struct OperatorCatalogue {
    lists: Mutex<Vec<Option<BTreeSet<String>>>>,
}

impl OperatorCatalogue {
    /// A catalogue of `workers` workers, none known yet.
    pub fn new(workers: usize) -> Self {
        Self {
            lists: Mutex::new(vec![None; workers]),
        }
    }

    /// Records what worker `index` runs.
    pub fn learn(&self, index: usize, operators: BTreeSet<String>) {
        self.lists.lock().expect("catalogue lock poisoned")[index] = Some(operators);
    }

    /// Asks every worker (`workers[i]` is worker `i`) which operators it runs, all at
    /// once, and records the answers. Each call is bounded by the channel's deadline;
    /// a worker that does not answer keeps what was known of it.
    pub async fn refresh_all(
        &self,
        workers: &[WorkerClient<NodeChannel>],
    ) -> Vec<Result<(), Status>> {
        let asks = workers.iter().enumerate().map(|(index, worker)| {
            let mut worker = worker.clone();
            async move {
                let reply = worker.list_operators(ListOperatorsRequest {}).await?;
                self.learn(index, reply.into_inner().operators.into_iter().collect());
                Ok(())
            }
        });
        futures::future::join_all(asks).await
    }

    /// Refreshes the catalogue every `period`, for as long as the scheduler runs.
    pub async fn refresh_forever(
        self: Arc<Self>,
        workers: Vec<WorkerClient<NodeChannel>>,
        period: Duration,
    ) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for (index, result) in self.refresh_all(&workers).await.into_iter().enumerate() {
                if let Err(status) = result {
                    debug!(worker = index, error = %status.message(), "operator list not refreshed");
                }
            }
        }
    }

    /// The operators every worker is known to run (none while a worker was never
    /// heard from).
    pub fn common(&self) -> BTreeSet<String> {
        let lists = self.lists.lock().expect("catalogue lock poisoned");
        let mut known = lists.iter();
        let Some(Some(first)) = known.next() else {
            return BTreeSet::new();
        };
        known
            .try_fold(first.clone(), |common, list| {
                list.as_ref()
                    .map(|l| common.intersection(l).cloned().collect())
            })
            .unwrap_or_default()
    }

    /// Whether every worker can run every one of `operators`, by what is known now.
    pub fn check(&self, operators: &[String]) -> Result<(), Gap> {
        check(
            &self.lists.lock().expect("catalogue lock poisoned"),
            operators,
        )
    }
}

/// The decision of [`OperatorCatalogue::check`], on plain data.
fn check(lists: &[Option<BTreeSet<String>>], operators: &[String]) -> Result<(), Gap> {
    let unknown: Vec<usize> = (0..lists.len()).filter(|&i| lists[i].is_none()).collect();
    if !unknown.is_empty() {
        return Err(Gap::UnknownWorkers(unknown));
    }
    for operator in operators {
        let workers: Vec<usize> = lists
            .iter()
            .enumerate()
            .filter(|(_, list)| list.as_ref().is_some_and(|l| !l.contains(operator)))
            .map(|(i, _)| i)
            .collect();
        if !workers.is_empty() {
            return Err(Gap::Missing {
                operator: operator.clone(),
                everywhere: workers.len() == lists.len(),
                workers,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Option<BTreeSet<String>> {
        Some(names.iter().map(|n| n.to_string()).collect())
    }

    fn ops(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_worker_must_run_every_operator() {
        let lists = [list(&["A", "B"]), list(&["A", "B", "C"])];
        assert_eq!(check(&lists, &ops(&["A", "B", "A"])), Ok(()));
        assert_eq!(
            check(&lists, &ops(&["A", "C"])),
            Err(Gap::Missing {
                operator: "C".into(),
                workers: vec![0],
                everywhere: false
            })
        );
        assert_eq!(
            check(&lists, &ops(&["D"])),
            Err(Gap::Missing {
                operator: "D".into(),
                workers: vec![0, 1],
                everywhere: true
            })
        );
    }

    #[test]
    fn a_worker_never_heard_from_leaves_a_gap() {
        let lists = [list(&["A"]), None];
        assert_eq!(
            check(&lists, &ops(&["A"])),
            Err(Gap::UnknownWorkers(vec![1]))
        );
        let catalogue = OperatorCatalogue::new(2);
        catalogue.learn(0, ["A".to_string()].into());
        catalogue.learn(1, ["A".to_string()].into());
        assert_eq!(catalogue.check(&ops(&["A"])), Ok(()));
    }
}
