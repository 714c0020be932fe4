//! Each node's colour on the page (the ring's arcs, its legend, the executions'
//! timeline), decided by the server once and kept.
//!
//! A colour that followed a node's index among the nodes listed now would change
//! whenever another node joins, leaves or drops out of the ring: arcs of the same
//! node would change colour from one poll to the next and two nodes would swap
//! colours, which reads as data moving when it does not. So a node gets a colour
//! slot the first time a poll lists it (nodes first seen together take slots in
//! the order they are listed: storage nodes in membership order, then the
//! scheduler, then the workers) and keeps it for as long as the dashboard runs:
//! through failures, fencing, restarts, and other nodes joining or leaving. A slot
//! is never given to another node, so two nodes listed at the same time never share
//! a colour, and every page (reloaded or new) draws the same colours.

use std::collections::HashMap;

/// The first colours handed out: distinct on a white page and for the common kinds
/// of colour blindness taken in pairs of neighbours.
const PALETTE: [&str; 8] = [
    "#3b6fd8", "#d8643b", "#2f9e5a", "#a23bd8", "#d8b53b", "#3bb5d8", "#d83b7a", "#6b7a3b",
];

/// The hue step between colours beyond the palette: the golden angle, which keeps
/// every new hue far from those handed out just before it.
const GOLDEN_ANGLE_DEGREES: f64 = 137.508;

/// How many slots are remembered at most: a dashboard watching a cluster whose
/// workers register under ever new ids must not grow without bound. Past it, the
/// slots of nodes not listed for the longest time are forgotten first.
pub const MAX_REMEMBERED: usize = 4096;

/// The slots handed out so far; see the module documentation.
#[derive(Debug, Default)]
pub struct ColourBook {
    /// Slot and last poll that listed it, by node id.
    slots: HashMap<String, (usize, u64)>,
    /// The next slot to hand out.
    next: usize,
    /// Polls seen, for forgetting the longest unseen first.
    polls: u64,
}

impl ColourBook {
    /// The colour of every node in `ids` (one poll's listing, in its order), handing
    /// a new slot to each node seen for the first time.
    pub fn colours<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        self.polls += 1;
        let colours = ids
            .into_iter()
            .map(|id| {
                let slot = match self.slots.get_mut(id) {
                    Some((slot, seen)) => {
                        *seen = self.polls;
                        *slot
                    }
                    None => {
                        let slot = self.next;
                        self.next += 1;
                        self.slots.insert(id.to_string(), (slot, self.polls));
                        slot
                    }
                };
                colour_of_slot(slot)
            })
            .collect();
        self.forget_beyond(MAX_REMEMBERED);
        colours
    }

    /// Forgets the slots of the nodes unseen for longest until at most `limit` are
    /// remembered (never those of the current poll).
    fn forget_beyond(&mut self, limit: usize) {
        if self.slots.len() <= limit {
            return;
        }
        let mut by_age: Vec<(u64, String)> = self
            .slots
            .iter()
            .filter(|(_, (_, seen))| *seen < self.polls)
            .map(|(id, (_, seen))| (*seen, id.clone()))
            .collect();
        by_age.sort_unstable();
        let excess = self.slots.len() - limit;
        for (_, id) in by_age.into_iter().take(excess) {
            self.slots.remove(&id);
        }
    }
}

/// The CSS colour of slot `slot`: the palette first, then hues a golden angle apart
/// (lighter and darker in turn), so that no two slots share a colour.
pub fn colour_of_slot(slot: usize) -> String {
    if let Some(colour) = PALETTE.get(slot) {
        return (*colour).to_string();
    }
    let beyond = slot - PALETTE.len();
    let hue = (beyond as f64 * GOLDEN_ANGLE_DEGREES + 17.0) % 360.0;
    let lightness = [42, 56, 35, 63][beyond / 7 % 4];
    format!("hsl({hue:.1}, 62%, {lightness}%)")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn ids(list: &str) -> Vec<&str> {
        list.split_whitespace().collect()
    }

    fn coloured(book: &mut ColourBook, list: &str) -> HashMap<String, String> {
        let listed = ids(list);
        listed
            .iter()
            .map(|id| id.to_string())
            .zip(book.colours(listed.iter().copied()))
            .collect()
    }

    #[test]
    fn every_node_keeps_its_colour_whoever_else_fails_leaves_or_joins() {
        let mut book = ColourBook::default();
        let first = coloured(&mut book, "s1 s2 s3 s4 s5 sched w1 w2");
        let distinct: HashSet<&String> = first.values().collect();
        assert_eq!(distinct.len(), 8, "one colour per node: {first:?}");
        // s2 fails: it is still listed (as failed); nobody changes colour.
        assert_eq!(coloured(&mut book, "s1 s2 s3 s4 s5 sched w1 w2"), first);
        // s2 leaves the membership and a worker leaves: the others keep theirs.
        let after_leave = coloured(&mut book, "s1 s3 s4 s5 sched w2");
        for (id, colour) in &after_leave {
            assert_eq!(
                colour, &first[id],
                "{id} changed colour when s2 and w1 left"
            );
        }
        // A storage node joins in the middle of the membership, a worker registers:
        // the old nodes keep theirs, the new ones get colours nobody has.
        let after_join = coloured(&mut book, "s1 s3 s6 s4 s5 sched w2 w3");
        for (id, colour) in &first {
            if let Some(now) = after_join.get(id) {
                assert_eq!(now, colour, "{id} changed colour when s6 and w3 joined");
            }
        }
        let taken: HashSet<&String> = first.values().collect();
        assert!(!taken.contains(&after_join["s6"]), "{after_join:?}");
        assert!(!taken.contains(&after_join["w3"]), "{after_join:?}");
        assert_ne!(after_join["s6"], after_join["w3"]);
        // s2 comes back (restarted, or rejoining): its old colour.
        assert_eq!(coloured(&mut book, "s1 s2 s3")["s2"], first["s2"]);
    }

    #[test]
    fn colours_beyond_the_palette_stay_distinct() {
        let colours: Vec<String> = (0..200).map(colour_of_slot).collect();
        let distinct: HashSet<&String> = colours.iter().collect();
        assert_eq!(distinct.len(), colours.len());
        assert_eq!(colours[0], PALETTE[0]);
        assert!(colours[8].starts_with("hsl("), "{}", colours[8]);
    }

    #[test]
    fn the_book_forgets_the_longest_unseen_nodes_past_its_bound() {
        let mut book = ColourBook::default();
        let old = book.colours(["w-old"])[0].clone();
        book.colours(["w-kept"]);
        for i in 0..3 {
            book.colours([format!("w{i}").as_str()]);
        }
        book.forget_beyond(3);
        assert_eq!(book.slots.len(), 3);
        assert!(!book.slots.contains_key("w-old"));
        assert!(!book.slots.contains_key("w-kept"));
        // A forgotten node that comes back gets a new slot, never one in use.
        assert_ne!(book.colours(["w-old"])[0], old);
    }
}
