//! Least-loaded assignment of operators to workers.
//!
//! A worker's **load** is the number of operators assigned to it and not yet
//! confirmed complete. Each operator goes to a worker of least load; among equally
//! loaded workers the choice rotates (a cursor moves past each pick), so ties are
//! broken fairly and not always in favour of the first worker. Only workers that may
//! take work now (alive, not leaving: `crate::members`) are candidates; the table
//! grows as workers join, and keeps the load of those that left until their
//! operators are settled.

/// Load accounting for the workers the scheduler knows, by slot.
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

    /// Picks a worker for each of `operators` operators, in chain order, among the
    /// workers `placeable` marks (slot `i` may take work if `placeable[i]`), counting
    /// each pick before the next (so a long chain spreads over the workers too).
    /// `None` when no worker is placeable.
    pub fn assign(&mut self, operators: usize, placeable: &[bool]) -> Option<Vec<usize>> {
        self.grow(placeable.len());
        if !placeable.contains(&true) {
            return None;
        }
        Some((0..operators).map(|_| self.assign_one(placeable)).collect())
    }

    /// Makes room for `workers` slots (workers that joined), each idle.
    fn grow(&mut self, workers: usize) {
        if workers > self.load.len() {
            self.load.resize(workers, 0);
            self.assigned.resize(workers, 0);
        }
    }

    fn assign_one(&mut self, placeable: &[bool]) -> usize {
        let workers = placeable.len();
        let candidates = || (0..workers).filter(|&w| placeable[w]);
        let least = candidates()
            .map(|w| self.load[w])
            .min()
            .expect("at least one placeable worker");
        let pick = (0..workers)
            .map(|offset| (self.cursor + offset) % workers)
            .find(|&w| placeable[w] && self.load[w] == least)
            .expect("some placeable worker has the least load");
        self.cursor = (pick + 1) % workers;
        self.load[pick] += 1;
        self.assigned[pick] += 1;
        pick
    }

    /// Records that `worker` finished one operator (an unknown slot changes
    /// nothing).
    pub fn complete(&mut self, worker: usize) {
        if let Some(load) = self.load.get_mut(worker) {
            *load = load.saturating_sub(1);
        }
    }

    /// Current load of each worker (slots that never took work may be missing at
    /// the end).
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

    const ALL3: [bool; 3] = [true; 3];

    fn spread(values: &[u64]) -> u64 {
        values.iter().max().unwrap() - values.iter().min().unwrap()
    }

    #[test]
    fn equal_operators_spread_within_one() {
        let mut table = LoadTable::new(3);
        for chain in [1, 5, 10, 2, 7, 1, 1] {
            table.assign(chain, &ALL3).unwrap();
            assert!(spread(table.loads()) <= 1, "{:?}", table.loads());
        }
        assert_eq!(table.loads().iter().sum::<u64>(), 27);
    }

    #[test]
    fn ties_rotate_instead_of_favouring_the_first_worker() {
        let mut table = LoadTable::new(3);
        let mut picks = Vec::new();
        for _ in 0..6 {
            let worker = table.assign(1, &ALL3).unwrap()[0];
            picks.push(worker);
            table.complete(worker);
        }
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(table.assigned(), &[2, 2, 2]);
    }

    #[test]
    fn completions_bring_load_back_to_zero_and_steer_new_work() {
        let mut table = LoadTable::new(3);
        table.assign(6, &ALL3).unwrap();
        assert_eq!(table.loads(), &[2, 2, 2]);
        // Worker 1 finishes both of its operators: it gets the next ones.
        table.complete(1);
        table.complete(1);
        assert_eq!(table.assign(2, &ALL3).unwrap(), [1, 1]);
        for worker in [0, 0, 1, 1, 2, 2] {
            table.complete(worker);
        }
        assert_eq!(table.loads(), &[0, 0, 0]);
        table.complete(0);
        assert_eq!(table.loads(), &[0, 0, 0], "never below zero");
    }

    #[test]
    fn only_placeable_workers_are_picked_and_joiners_take_work_first() {
        let mut table = LoadTable::new(1);
        assert_eq!(table.assign(3, &[true]).unwrap(), [0, 0, 0]);
        // Two workers join: idle, they take the next operators.
        assert_eq!(table.assign(4, &ALL3).unwrap(), [1, 2, 1, 2]);
        // Worker 0 leaves: nothing more on it, however idle.
        for _ in 0..3 {
            table.complete(0);
        }
        assert_eq!(table.assign(2, &[false, true, true]).unwrap(), [1, 2]);
        assert_eq!(table.loads(), &[0, 3, 3]);
        assert_eq!(table.assign(1, &[false, false, false]), None);
        table.complete(7);
        assert_eq!(table.loads(), &[0, 3, 3], "an unknown slot changes nothing");
    }
}
