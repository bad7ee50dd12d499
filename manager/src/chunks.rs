//! Cutting an assignments update into messages of bounded size.
//!
//! A node's first full set holds every task assigned to it and the
//! plaintext of their secrets and configs: with enough tasks it outgrows
//! any message limit. [`into_chunks`] cuts one update into messages of at
//! most about `budget` encoded bytes (a task or file larger than the budget
//! travels alone); every message but the last says `more`, and the worker
//! puts them together before acting, so a cut full set is never mistaken
//! for a smaller one.

use prost::Message;
use swarmlet_proto::dispatcher::AssignmentsMessage;

/// `msg` as one or more messages of about `budget` bytes at most.
pub fn into_chunks(mut msg: AssignmentsMessage, budget: usize) -> Vec<AssignmentsMessage> {
    if msg.encoded_len() <= budget {
        return vec![msg];
    }
    let tasks = std::mem::take(&mut msg.updated);
    let files = std::mem::take(&mut msg.files);
    // The first message carries everything but the tasks and files; tasks
    // come first, then files (the worker acts only on the whole).
    let mut cut = Cutter {
        out: Vec::new(),
        size: msg.encoded_len(),
        current: msg,
        budget,
    };
    for t in tasks {
        cut.make_room(t.encoded_len()).updated.push(t);
    }
    for f in files {
        cut.make_room(f.encoded_len()).files.push(f);
    }
    let mut out = cut.out;
    out.push(cut.current);
    let last = out.len() - 1;
    for (i, m) in out.iter_mut().enumerate() {
        m.more = i < last;
    }
    out
}

/// The messages cut so far and the one being filled.
struct Cutter {
    out: Vec<AssignmentsMessage>,
    current: AssignmentsMessage,
    size: usize,
    budget: usize,
}

impl Cutter {
    /// The message to put an item of `len` encoded bytes in: the current
    /// one, or a new one when it would outgrow the budget.
    fn make_room(&mut self, len: usize) -> &mut AssignmentsMessage {
        // Field tag and length prefix: a few bytes beyond the item itself.
        let len = len + 8;
        if self.size + len > self.budget && self.size > 0 {
            let full = std::mem::take(&mut self.current);
            self.out.push(full);
            self.size = 0;
        }
        self.size += len;
        &mut self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::dispatcher::FilePayload;
    use swarmlet_proto::objects::Task;

    fn task(i: usize, pad: usize) -> Task {
        Task {
            id: format!("t{i}"),
            service_name: "x".repeat(pad),
            ..Default::default()
        }
    }

    #[test]
    fn a_small_update_is_one_message() {
        let msg = AssignmentsMessage {
            full: true,
            updated: vec![task(1, 10)],
            ..Default::default()
        };
        let out = into_chunks(msg.clone(), 1024);
        assert_eq!(out, vec![msg]);
    }

    #[test]
    fn a_large_full_set_is_cut_below_the_budget_and_put_together_again() {
        let msg = AssignmentsMessage {
            full: true,
            updated: (0..2000).map(|i| task(i, 3000)).collect(),
            removed: vec!["gone".into()],
            files: vec![FilePayload {
                id: "s1".into(),
                data: vec![7; 500 * 1024],
            }],
            ..Default::default()
        };
        let budget = 1024 * 1024;
        let out = into_chunks(msg.clone(), budget);
        assert!(out.len() > 5, "{} chunks", out.len());
        assert!(out.iter().all(|m| m.encoded_len() <= budget));
        assert!(out[0].full && out[1..].iter().all(|m| !m.full));
        assert!(out[..out.len() - 1].iter().all(|m| m.more));
        assert!(!out[out.len() - 1].more);
        let tasks: Vec<Task> = out.iter().flat_map(|m| m.updated.clone()).collect();
        assert_eq!(tasks, msg.updated);
        let files: Vec<FilePayload> = out.iter().flat_map(|m| m.files.clone()).collect();
        assert_eq!(files, msg.files);
        assert_eq!(out[0].removed, msg.removed);
    }

    #[test]
    fn an_item_larger_than_the_budget_travels_alone() {
        let msg = AssignmentsMessage {
            updated: vec![task(1, 100), task(2, 5000), task(3, 100)],
            ..Default::default()
        };
        let out = into_chunks(msg, 1000);
        let sizes: Vec<usize> = out.iter().map(|m| m.updated.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }
}
