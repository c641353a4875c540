//! The input gate: merges the channels feeding one subtask into one ordered message stream.
//!
//! Per input channel the gate tracks its watermark, whether it is idle, whether it has ended,
//! and whether it is blocked on a barrier. Its rules:
//!
//! 1. A batch passes through at once and marks its input active.
//! 2. The combined watermark is the minimum over inputs that are not idle; an input that has
//!    not sent a watermark yet counts as `i64::MIN`, one that has ended as `i64::MAX` (end of
//!    stream is its final watermark). It is emitted only when it rises above the last emitted
//!    value, so downstream watermarks never go back.
//! 3. When every input is idle, the gate emits `Idle` once.
//! 4. When every input has ended the combined watermark is `MAX`; the gate emits it, then
//!    `EndOfStream`.
//! 5. Barrier alignment: after `Barrier(n)` arrives on an input, later messages of that input
//!    are buffered until `Barrier(n)` has arrived on every input that has not ended; then the
//!    gate emits `Barrier(n)` once and replays the buffered messages. So everything before
//!    the barrier on every input is processed before it, and nothing after it.

use std::collections::VecDeque;

use crate::message::{CheckpointId, Message, Watermark};

#[derive(Debug, Default)]
struct InputState {
    watermark: Option<i64>,
    idle: bool,
    ended: bool,
    /// Set between this input's barrier and the aligned emission of that barrier.
    at_barrier: bool,
    buffered: VecDeque<Message>,
}

/// Merges `n` inputs; see the module doc for the rules.
#[derive(Debug)]
pub(crate) struct InputGate {
    inputs: Vec<InputState>,
    emitted_watermark: Option<i64>,
    emitted_idle: bool,
    pending_barrier: Option<CheckpointId>,
    finished: bool,
}

impl InputGate {
    pub(crate) fn new(inputs: usize) -> Self {
        InputGate {
            inputs: (0..inputs).map(|_| InputState::default()).collect(),
            emitted_watermark: None,
            emitted_idle: false,
            pending_barrier: None,
            finished: false,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Accepts `message` from input `input`; appends what to process next to `out`.
    pub(crate) fn accept(&mut self, input: usize, message: Message, out: &mut Vec<Message>) {
        if self.inputs[input].at_barrier {
            self.inputs[input].buffered.push_back(message);
            return;
        }
        match message {
            Message::Batch(batch) => {
                self.inputs[input].idle = false;
                self.emitted_idle = false;
                out.push(Message::Batch(batch));
            }
            Message::Watermark(Watermark::EventTime(t)) => {
                let state = &mut self.inputs[input];
                state.idle = false;
                state.watermark = Some(state.watermark.map_or(t, |w| w.max(t)));
                self.emit_watermark(out);
            }
            Message::Watermark(Watermark::Idle) => {
                self.inputs[input].idle = true;
                self.emit_watermark(out);
            }
            Message::Barrier(id) => {
                self.inputs[input].at_barrier = true;
                self.pending_barrier = Some(id);
                self.try_align(out);
            }
            Message::EndOfStream => {
                self.inputs[input].ended = true;
                self.try_align(out);
                self.emit_watermark(out);
                if !self.finished && self.inputs.iter().all(|i| i.ended) {
                    self.finished = true;
                    out.push(Message::EndOfStream);
                }
            }
        }
    }

    fn emit_watermark(&mut self, out: &mut Vec<Message>) {
        let counted = self.inputs.iter().filter(|i| i.ended || !i.idle);
        let watermarks = counted.map(|i| match i.ended {
            true => i64::MAX,
            false => i.watermark.unwrap_or(i64::MIN),
        });
        match watermarks.min() {
            Some(min) => {
                if self.emitted_watermark.is_none_or(|w| min > w) && min > i64::MIN {
                    self.emitted_watermark = Some(min);
                    self.emitted_idle = false;
                    out.push(Message::Watermark(Watermark::EventTime(min)));
                }
            }
            None => {
                if !self.emitted_idle {
                    self.emitted_idle = true;
                    out.push(Message::Watermark(Watermark::Idle));
                }
            }
        }
    }

    fn try_align(&mut self, out: &mut Vec<Message>) {
        let Some(id) = self.pending_barrier else {
            return;
        };
        if !self.inputs.iter().all(|i| i.ended || i.at_barrier) {
            return;
        }
        self.pending_barrier = None;
        out.push(Message::Barrier(id));
        let mut replay = Vec::new();
        for (index, input) in self.inputs.iter_mut().enumerate() {
            input.at_barrier = false;
            replay.extend(input.buffered.drain(..).map(|m| (index, m)));
        }
        for (index, message) in replay {
            self.accept(index, message, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wm(t: i64) -> Message {
        Message::Watermark(Watermark::EventTime(t))
    }

    fn watermarks(out: &[Message]) -> Vec<Watermark> {
        out.iter()
            .filter_map(|m| match m {
                Message::Watermark(w) => Some(*w),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn watermark_is_the_minimum_over_inputs_and_never_goes_back() {
        let mut gate = InputGate::new(2);
        let mut out = Vec::new();
        gate.accept(0, wm(10), &mut out);
        assert!(out.is_empty(), "input 1 has no watermark yet");
        gate.accept(1, wm(5), &mut out);
        gate.accept(1, wm(20), &mut out);
        gate.accept(0, wm(30), &mut out);
        assert_eq!(
            watermarks(&out),
            vec![
                Watermark::EventTime(5),
                Watermark::EventTime(10),
                Watermark::EventTime(20)
            ]
        );
    }

    #[test]
    fn idle_inputs_do_not_hold_back_the_watermark() {
        let mut gate = InputGate::new(2);
        let mut out = Vec::new();
        gate.accept(0, wm(100), &mut out);
        gate.accept(1, Message::Watermark(Watermark::Idle), &mut out);
        assert_eq!(watermarks(&out), vec![Watermark::EventTime(100)]);
        gate.accept(0, Message::Watermark(Watermark::Idle), &mut out);
        assert_eq!(watermarks(&out).last(), Some(&Watermark::Idle));
        // Input 1 wakes up behind: the combined watermark does not go back.
        out.clear();
        gate.accept(1, wm(50), &mut out);
        assert!(watermarks(&out).is_empty());
        gate.accept(1, wm(150), &mut out);
        assert_eq!(watermarks(&out), vec![Watermark::EventTime(150)]);
    }

    #[test]
    fn end_of_stream_of_all_inputs_emits_the_final_watermark_then_end() {
        let mut gate = InputGate::new(2);
        let mut out = Vec::new();
        gate.accept(0, wm(10), &mut out);
        gate.accept(0, Message::EndOfStream, &mut out);
        assert!(!gate.is_finished());
        gate.accept(1, wm(7), &mut out);
        gate.accept(1, Message::EndOfStream, &mut out);
        assert!(gate.is_finished());
        assert_eq!(
            watermarks(&out),
            vec![Watermark::EventTime(7), Watermark::MAX]
        );
        assert!(matches!(out.last(), Some(Message::EndOfStream)));
    }

    #[test]
    fn an_ended_input_and_an_idle_input_release_every_window() {
        let mut gate = InputGate::new(2);
        let mut out = Vec::new();
        gate.accept(0, wm(10), &mut out);
        gate.accept(1, Message::Watermark(Watermark::Idle), &mut out);
        gate.accept(0, Message::EndOfStream, &mut out);
        assert_eq!(
            watermarks(&out),
            vec![Watermark::EventTime(10), Watermark::MAX]
        );
        assert!(!gate.is_finished());
    }

    #[test]
    fn barriers_are_aligned_and_later_messages_wait() {
        let mut gate = InputGate::new(2);
        let mut out = Vec::new();
        gate.accept(0, Message::Barrier(CheckpointId(1)), &mut out);
        gate.accept(0, wm(99), &mut out);
        assert!(out.is_empty(), "input 0 is blocked behind its barrier");
        gate.accept(1, wm(1), &mut out);
        assert!(out.is_empty(), "input 0 holds the minimum at MIN");
        gate.accept(1, Message::Barrier(CheckpointId(1)), &mut out);
        assert!(matches!(out[0], Message::Barrier(CheckpointId(1))));
        assert_eq!(watermarks(&out), vec![Watermark::EventTime(1)]);
        let barriers = out
            .iter()
            .filter(|m| matches!(m, Message::Barrier(_)))
            .count();
        assert_eq!(barriers, 1);
    }
}
