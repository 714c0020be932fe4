//! Least-loaded assignment of operators to workers.
//!
//! A worker's **load** is the number of operators assigned to it and not yet
//! confirmed complete. Each operator goes to a worker of least load; among equally
//! loaded workers the choice rotates (a cursor moves past each pick), so ties are
//! broken fairly and not always in favour of the first worker.

/// Load accounting for a fixed set of workers.
#[derive(Debug, Clone)]
pub struct LoadTable {
    load: Vec<u64>,
    assigned: Vec<u64>,
    cursor: usize,
}

impl LoadTable {
    /// A table for `workers` workers, all idle.
    pub fn new(workers: usize) -> Self {
        Self {
            load: vec![0; workers],
            assigned: vec![0; workers],
            cursor: 0,
        }
    }

    /// Picks a worker for each of `operators` operators, in chain order, counting each
    /// pick before the next (so a long chain spreads over the workers too).
    pub fn assign(&mut self, operators: usize) -> Vec<usize> {
        (0..operators).map(|_| self.assign_one()).collect()
    }

    fn assign_one(&mut self) -> usize {
        let workers = self.load.len();
        let least = *self.load.iter().min().expect("at least one worker");
        let pick = (0..workers)
            .map(|offset| (self.cursor + offset) % workers)
            .find(|&w| self.load[w] == least)
            .expect("some worker has the least load");
        self.cursor = (pick + 1) % workers;
        self.load[pick] += 1;
        self.assigned[pick] += 1;
        pick
    }

    /// Records that `worker` finished one operator.
    pub fn complete(&mut self, worker: usize) {
        self.load[worker] = self.load[worker].saturating_sub(1);
    }

    /// Current load of each worker.
    pub fn loads(&self) -> &[u64] {
        &self.load
    }

    /// Operators assigned to each worker since start.
    pub fn assigned(&self) -> &[u64] {
        &self.assigned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(values: &[u64]) -> u64 {
        values.iter().max().unwrap() - values.iter().min().unwrap()
    }

    #[test]
    fn equal_operators_spread_within_one() {
        let mut table = LoadTable::new(3);
        for chain in [1, 5, 10, 2, 7, 1, 1] {
            table.assign(chain);
            assert!(spread(table.loads()) <= 1, "{:?}", table.loads());
        }
        assert_eq!(table.loads().iter().sum::<u64>(), 27);
    }

    #[test]
    fn ties_rotate_instead_of_favouring_the_first_worker() {
        let mut table = LoadTable::new(3);
        let mut picks = Vec::new();
        for _ in 0..6 {
            let worker = table.assign(1)[0];
            picks.push(worker);
            table.complete(worker);
        }
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(table.assigned(), &[2, 2, 2]);
    }

    #[test]
    fn completions_bring_load_back_to_zero_and_steer_new_work() {
        let mut table = LoadTable::new(3);
        table.assign(6);
        assert_eq!(table.loads(), &[2, 2, 2]);
        // Worker 1 finishes both of its operators: it gets the next ones.
        table.complete(1);
        table.complete(1);
        assert_eq!(table.assign(2), [1, 1]);
        for worker in [0, 0, 1, 1, 2, 2] {
            table.complete(worker);
        }
        assert_eq!(table.loads(), &[0, 0, 0]);
        table.complete(0);
        assert_eq!(table.loads(), &[0, 0, 0], "never below zero");
    }
}
