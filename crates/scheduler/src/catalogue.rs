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

/// The operators of every worker, by slot (`crate::members`), as last learned
/// (`None`: never learned, or forgotten when the slot changed hands).
#[derive(Debug, Default)]
pub(crate) struct OperatorCatalogue {
    lists: Mutex<Vec<Option<BTreeSet<String>>>>,
}

impl OperatorCatalogue {
    /// Records what the worker of slot `index` runs.
    pub fn learn(&self, index: usize, operators: BTreeSet<String>) {
        let mut lists = self.lists.lock().expect("catalogue lock poisoned");
        if lists.len() <= index {
            lists.resize(index + 1, None);
        }
        lists[index] = Some(operators);
    }

    /// Forgets what slot `index` runs: a worker joined on it (perhaps another
    /// process, with other operators), so its list is asked again before a submit
    /// relies on it.
    pub fn forget(&self, index: usize) {
        if let Some(list) = self
            .lists
            .lock()
            .expect("catalogue lock poisoned")
            .get_mut(index)
        {
            *list = None;
        }
    }

    /// Asks every worker of `workers` (slot, client) which operators it runs, all
    /// at once, and records the answers. Each call is bounded by the channel's
    /// deadline; a worker that does not answer keeps what was known of it.
    pub async fn refresh_all(
        &self,
        workers: &[(usize, WorkerClient<NodeChannel>)],
    ) -> Vec<(usize, Result<(), Status>)> {
        let asks = workers.iter().map(|(index, worker)| {
            let mut worker = worker.clone();
            let index = *index;
            async move {
                let asked = async {
                    let reply = worker.list_operators(ListOperatorsRequest {}).await?;
                    self.learn(index, reply.into_inner().operators.into_iter().collect());
                    Ok(())
                };
                (index, asked.await)
            }
        });
        futures::future::join_all(asks).await
    }

    /// Refreshes the catalogue every `period`, for as long as the scheduler runs,
    /// asking the workers `workers()` names at each round (the placeable ones: the
    /// set changes as workers come and go).
    pub async fn refresh_forever(
        self: Arc<Self>,
        workers: impl Fn() -> Vec<(usize, WorkerClient<NodeChannel>)>,
        period: Duration,
    ) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for (index, result) in self.refresh_all(&workers()).await {
                if let Err(status) = result {
                    debug!(worker = index, error = %status.message(), "operator list not refreshed");
                }
            }
        }
    }

    /// The operators every worker of `slots` is known to run (none while one was
    /// never heard from, or when `slots` is empty).
    pub fn common(&self, slots: &[usize]) -> BTreeSet<String> {
        let lists = self.lists.lock().expect("catalogue lock poisoned");
        let mut known = slots.iter().map(|&i| lists.get(i).and_then(Option::as_ref));
        let Some(Some(first)) = known.next() else {
            return BTreeSet::new();
        };
        known
            .try_fold(first.clone(), |common, list| {
                list.map(|l| common.intersection(l).cloned().collect())
            })
            .unwrap_or_default()
    }

    /// Whether every worker of `slots` can run every one of `operators`, by what is
    /// known now.
    pub fn check(&self, operators: &[String], slots: &[usize]) -> Result<(), Gap> {
        let lists = self.lists.lock().expect("catalogue lock poisoned");
        let entries: Vec<(usize, Option<&BTreeSet<String>>)> = slots
            .iter()
            .map(|&i| (i, lists.get(i).and_then(Option::as_ref)))
            .collect();
        check(&entries, operators)
    }
}

/// The decision of [`OperatorCatalogue::check`], on plain data: each entry is a
/// worker's slot and what it is known to run.
fn check(lists: &[(usize, Option<&BTreeSet<String>>)], operators: &[String]) -> Result<(), Gap> {
    let unknown: Vec<usize> = lists
        .iter()
        .filter(|(_, list)| list.is_none())
        .map(|(i, _)| *i)
        .collect();
    if !unknown.is_empty() {
        return Err(Gap::UnknownWorkers(unknown));
    }
    for operator in operators {
        let workers: Vec<usize> = lists
            .iter()
            .filter(|(_, list)| list.is_some_and(|l| !l.contains(operator)))
            .map(|(i, _)| *i)
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

    fn list(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn ops(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_worker_must_run_every_operator() {
        let (a, b) = (list(&["A", "B"]), list(&["A", "B", "C"]));
        let lists = [(0, Some(&a)), (1, Some(&b))];
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
        let a = list(&["A"]);
        let lists = [(0, Some(&a)), (1, None)];
        assert_eq!(
            check(&lists, &ops(&["A"])),
            Err(Gap::UnknownWorkers(vec![1]))
        );
        let catalogue = OperatorCatalogue::default();
        catalogue.learn(0, list(&["A"]));
        catalogue.learn(2, list(&["A", "B"]));
        assert_eq!(catalogue.check(&ops(&["A"]), &[0, 2]), Ok(()));
        assert_eq!(
            catalogue.check(&ops(&["A"]), &[0, 1, 2]),
            Err(Gap::UnknownWorkers(vec![1]))
        );
        assert_eq!(catalogue.common(&[0, 2]), list(&["A"]));
        // Only the slots asked about count: a worker that left is not consulted.
        assert_eq!(catalogue.check(&ops(&["B"]), &[2]), Ok(()));
        catalogue.forget(2);
        assert_eq!(
            catalogue.check(&ops(&["B"]), &[2]),
            Err(Gap::UnknownWorkers(vec![2]))
        );
    }
}
