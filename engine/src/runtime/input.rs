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
//! 5. Barrier alignment: after `Barrier(n)` arrives on an input, that input is *blocked*
//!    ([`InputGate::is_blocked`]) until `Barrier(n)` has arrived on every input that has not
//!    ended; then the gate emits `Barrier(n)` once. So everything before the barrier on every
//!    input is processed before it, and nothing after it. The runtime does not read a blocked
//!    input, so its messages wait in their bounded channel (backpressure), not in memory;
//!    messages a caller delivers anyway are buffered and replayed.
//!
//! Each input channel belongs to one input of the operator (a join's left or right); batches
//! come out tagged with that operator input.

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

/// Merges `n` input channels; see the module doc for the rules.
#[derive(Debug)]
pub(crate) struct InputGate {
    inputs: Vec<InputState>,
    /// The operator input of each channel.
    operator_input: Vec<usize>,
    emitted_watermark: Option<i64>,
    emitted_idle: bool,
    pending_barrier: Option<CheckpointId>,
    finished: bool,
}

impl InputGate {
    /// A gate over one channel per entry of `operator_input`, which names the operator input
    /// the channel feeds.
    pub(crate) fn new(operator_input: Vec<usize>) -> Self {
        InputGate {
            inputs: (0..operator_input.len())
                .map(|_| InputState::default())
                .collect(),
            operator_input,
            emitted_watermark: None,
            emitted_idle: false,
            pending_barrier: None,
            finished: false,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether channel `input` waits for the other channels' barrier (do not read it).
    pub(crate) fn is_blocked(&self, input: usize) -> bool {
        self.inputs[input].at_barrier
    }

    /// Accepts `message` from channel `input`; appends what to process next to `out`, with
    /// the operator input of a batch (0 for control messages).
    pub(crate) fn accept(
        &mut self,
        input: usize,
        message: Message,
        out: &mut Vec<(usize, Message)>,
    ) {
        if self.inputs[input].at_barrier {
            self.inputs[input].buffered.push_back(message);
            return;
        }
        match message {
            Message::Batch(batch) => {
                self.inputs[input].idle = false;
                self.emitted_idle = false;
                out.push((self.operator_input[input], Message::Batch(batch)));
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
                    out.push((0, Message::EndOfStream));
                }
            }
        }
    }

    fn emit_watermark(&mut self, out: &mut Vec<(usize, Message)>) {
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
                    out.push((0, Message::Watermark(Watermark::EventTime(min))));
                }
            }
            None => {
                if !self.emitted_idle {
                    self.emitted_idle = true;
                    out.push((0, Message::Watermark(Watermark::Idle)));
                }
            }
        }
    }

    fn try_align(&mut self, out: &mut Vec<(usize, Message)>) {
        let Some(id) = self.pending_barrier else {
            return;
        };
        if !self.inputs.iter().all(|i| i.ended || i.at_barrier) {
            return;
        }
        self.pending_barrier = None;
        out.push((0, Message::Barrier(id)));
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
    use arrow::array::Int32Array;
    use arrow::record_batch::RecordBatch;

    use super::*;

    fn wm(t: i64) -> Message {
        Message::Watermark(Watermark::EventTime(t))
    }

    fn watermarks(out: &[(usize, Message)]) -> Vec<Watermark> {
        out.iter()
            .filter_map(|(_, m)| match m {
                Message::Watermark(w) => Some(*w),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn watermark_is_the_minimum_over_inputs_and_never_goes_back() {
        let mut gate = InputGate::new(vec![0, 0]);
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
        let mut gate = InputGate::new(vec![0, 0]);
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
        let mut gate = InputGate::new(vec![0, 0]);
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
        assert!(matches!(out.last(), Some((_, Message::EndOfStream))));
    }

    #[test]
    fn an_ended_input_and_an_idle_input_release_every_window() {
        let mut gate = InputGate::new(vec![0, 0]);
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
        let mut gate = InputGate::new(vec![0, 0]);
        let mut out = Vec::new();
        gate.accept(0, Message::Barrier(CheckpointId(1)), &mut out);
        assert!(gate.is_blocked(0) && !gate.is_blocked(1));
        gate.accept(0, wm(99), &mut out);
        assert!(out.is_empty(), "input 0 is blocked behind its barrier");
        gate.accept(1, wm(1), &mut out);
        assert!(out.is_empty(), "input 0 holds the minimum at MIN");
        gate.accept(1, Message::Barrier(CheckpointId(1)), &mut out);
        assert!(matches!(out[0], (_, Message::Barrier(CheckpointId(1)))));
        assert!(!gate.is_blocked(0));
        assert_eq!(watermarks(&out), vec![Watermark::EventTime(1)]);
        let barriers = out
            .iter()
            .filter(|(_, m)| matches!(m, Message::Barrier(_)))
            .count();
        assert_eq!(barriers, 1);
    }

    #[test]
    fn batches_are_tagged_with_the_operator_input_of_their_channel() {
        // Channels 0 and 1 feed the left input, channel 2 the right.
        let mut gate = InputGate::new(vec![0, 0, 1]);
        let batch = RecordBatch::try_from_iter([(
            "a",
            std::sync::Arc::new(Int32Array::from(vec![1])) as _,
        )])
        .unwrap();
        let mut out = Vec::new();
        gate.accept(2, Message::Batch(batch.clone()), &mut out);
        gate.accept(1, Message::Batch(batch), &mut out);
        let inputs: Vec<usize> = out.iter().map(|(i, _)| *i).collect();
        assert_eq!(inputs, vec![1, 0]);
    }
}
