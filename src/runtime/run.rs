//! One interface over the single-threaded engine and the parallel one, as a pipeline drives
//! them: [`Run`]. Records go in with their position ([`Input`]); structured [`Output`]s come
//! out, each turned into the caller's item by a [`Prepare`] (on the worker threads of a
//! parallel engine, so rendering JSON lines there keeps it off the reading thread), and
//! handed to a [`Collect`] with the number of the input step that caused it. The collector
//! also learns when a step is complete and when watermarks move, which is all a policy
//! outside the engine (a deterministic order, a stop at the first reject, an aggregation
//! closing its windows) needs.

use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::nfa::Nfa;
use crate::runtime::parallel::ParallelError;
use crate::runtime::state::{EngineState, EngineStateRef};
use crate::runtime::{Engine, Input, Output, OutputKind, Stats};

/// The input step of the end of input (outputs caused by it carry this number).
pub const END_OF_INPUT: u64 = u64::MAX;

/// What a caller makes of each output, on the thread that produced it.
pub trait Prepare: Send + Sync + 'static {
    /// What the collector receives.
    type Item: Send + 'static;

    /// Turns one output of the patterns `nfas` (by index, as outputs name them) into an
    /// item. Watermark moves do not come here (see [`Collect::watermark`]).
    fn prepare(&self, nfas: &[Arc<Nfa>], output: Output) -> Self::Item;
}

/// Outputs as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsIs;

impl Prepare for AsIs {
    type Item = Output;

    fn prepare(&self, _nfas: &[Arc<Nfa>], output: Output) -> Output {
        output
    }
}

/// Where an engine's prepared outputs go.
///
/// Every input step (a record, a source's end, a processing-time tick, the end of input) has
/// a number, in the order the steps were given, the end of input [`END_OF_INPUT`]. Outputs
/// of one step come in the order the engine produced them for each key; outputs of
/// different keys (different workers) may interleave in any order, and a parallel engine
/// may give an output of a later step before one of an earlier step. [`Collect::complete`]
/// says when that can no longer happen.
pub trait Collect<T> {
    /// An output of step `seq`, of kind `kind`.
    fn output(&mut self, seq: u64, kind: OutputKind, item: T);

    /// Pattern `pattern`'s watermark moved to `watermark` at step `seq`, with
    /// [`EngineOptions::watermarks`](crate::runtime::EngineOptions::watermarks): given
    /// after every output of the steps up to `seq`.
    fn watermark(&mut self, seq: u64, pattern: usize, watermark: i64) {
        let _ = (seq, pattern, watermark);
    }

    /// Every output of the steps up to `through` has been given.
    fn complete(&mut self, through: u64) {
        let _ = through;
    }
}

/// The engine state for a checkpoint: borrowed where a single-threaded engine keeps it, or
/// gathered from the workers. Both serialise to the same bytes as an [`EngineState`].
pub enum StateOf<'a> {
    /// A single-threaded engine's state, where it lives.
    Borrowed(EngineStateRef<'a>),
    /// The workers' states, assembled.
    Owned(EngineState),
}

impl StateOf<'_> {
    /// The engine's counters as the state holds them.
    pub fn stats(&self) -> Stats {
        match self {
            StateOf::Borrowed(r) => r.stats,
            StateOf::Owned(o) => o.stats,
        }
    }
}

impl Serialize for StateOf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StateOf::Borrowed(r) => r.serialize(s),
            StateOf::Owned(o) => o.serialize(s),
        }
    }
}

/// An engine as a pipeline drives it, with one thread or several.
pub trait Run<T> {
    /// The step number the next input step will have.
    fn next_step(&self) -> u64;

    /// Takes one record; returns its step number.
    fn push(&mut self, input: &Input<'_>, out: &mut dyn Collect<T>) -> u64;

    /// Source partition `partition` has ended.
    fn end_source(&mut self, partition: usize, out: &mut dyn Collect<T>);

    /// Processing time is now `now_ms` (idle sources).
    fn tick(&mut self, now_ms: u64, out: &mut dyn Collect<T>);

    /// Every watermark to `to` if that is later ([`Engine::advance_watermark`]).
    fn advance_watermark(&mut self, to: i64, out: &mut dyn Collect<T>);

    /// The input has been silent for `quiet_ms` of processing time
    /// ([`Engine::advance_quiet`]).
    fn advance_quiet(&mut self, quiet_ms: u64, out: &mut dyn Collect<T>);

    /// Gives every output of the records taken so far (a live input paused).
    fn flush(&mut self, out: &mut dyn Collect<T>);

    /// Stops early: no later step is processed (what is in flight may still be given to
    /// the collector by [`Run::finish`], which should discard what it does not want).
    fn stop(&mut self);

    /// Ends the input (unless stopped): every watermark to +∞, every output given.
    ///
    /// # Errors
    /// A worker failed.
    fn finish(&mut self, out: &mut dyn Collect<T>) -> Result<Stats, ParallelError>;

    /// The whole state at the current step boundary; every output of the steps so far is
    /// given to `out` first.
    ///
    /// # Errors
    /// A worker failed or the engine was stopped.
    fn state(&mut self, out: &mut dyn Collect<T>) -> Result<StateOf<'_>, ParallelError>;

    /// Counters so far (outputs counted as they were given to the collector).
    fn stats(&self) -> Stats;

    /// Open partial matches, when known without stopping workers.
    fn open_partial_matches(&self) -> Option<usize>;

    /// How far the watermark trails the newest event time (ms), if known.
    fn watermark_lag(&self) -> Option<i64>;

    /// Event-time alignment: per source partition, how far (ms) it runs past the slowest
    /// ([`Engine::leads`]); empty when this engine cannot tell.
    fn leads(&self) -> Vec<i64> {
        Vec::new()
    }
}

/// A single-threaded [`Engine`] as a [`Run`]: outputs prepared on the calling thread.
pub struct Serial<P: Prepare> {
    engine: Engine,
    prepare: P,
    nfas: Vec<Arc<Nfa>>,
    outs: Vec<Output>,
    seq: u64,
}

impl<P: Prepare> Serial<P> {
    /// Drives `engine`, preparing its outputs with `prepare`.
    pub fn new(engine: Engine, prepare: P) -> Serial<P> {
        Serial {
            nfas: engine.nfas().cloned().collect(),
            engine,
            prepare,
            outs: Vec::new(),
            seq: 0,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Gives the outputs of the step just taken, its watermarks last, and completes it.
    fn give(&mut self, out: &mut dyn Collect<P::Item>) -> u64 {
        let seq = self.seq;
        for o in self.outs.drain(..) {
            match o {
                // The engine puts them after the step's other outputs.
                Output::Watermark { pattern, watermark } => out.watermark(seq, pattern, watermark),
                o => out.output(seq, o.kind(), self.prepare.prepare(&self.nfas, o)),
            }
        }
        out.complete(seq);
        self.seq = self.seq.saturating_add(1);
        seq
    }
}

impl<P: Prepare> Run<P::Item> for Serial<P> {
    fn next_step(&self) -> u64 {
        self.seq
    }

    fn push(&mut self, input: &Input<'_>, out: &mut dyn Collect<P::Item>) -> u64 {
        self.engine.push_input(input, &mut self.outs);
        self.give(out)
    }

    fn end_source(&mut self, partition: usize, out: &mut dyn Collect<P::Item>) {
        self.engine.end_source(partition, &mut self.outs);
        self.give(out);
    }

    fn tick(&mut self, now_ms: u64, out: &mut dyn Collect<P::Item>) {
        self.engine.tick(now_ms, &mut self.outs);
        self.give(out);
    }

    fn advance_watermark(&mut self, to: i64, out: &mut dyn Collect<P::Item>) {
        self.engine.advance_watermark(to, &mut self.outs);
        self.give(out);
    }

    fn advance_quiet(&mut self, quiet_ms: u64, out: &mut dyn Collect<P::Item>) {
        self.engine.advance_quiet(quiet_ms, &mut self.outs);
        self.give(out);
    }

    fn flush(&mut self, _out: &mut dyn Collect<P::Item>) {}

    fn stop(&mut self) {}

    fn finish(&mut self, out: &mut dyn Collect<P::Item>) -> Result<Stats, ParallelError> {
        self.seq = END_OF_INPUT;
        self.engine.finish(&mut self.outs);
        self.give(out);
        Ok(self.engine.stats())
    }

    fn state(&mut self, _out: &mut dyn Collect<P::Item>) -> Result<StateOf<'_>, ParallelError> {
        Ok(StateOf::Borrowed(self.engine.state_ref()))
    }

    fn stats(&self) -> Stats {
        self.engine.stats()
    }

    fn open_partial_matches(&self) -> Option<usize> {
        Some(self.engine.open_partial_matches())
    }

    fn watermark_lag(&self) -> Option<i64> {
        self.engine.watermark_lag()
    }

    fn leads(&self) -> Vec<i64> {
        self.engine.leads()
    }
}

/// A collector that keeps every item with its step, in the order given (tests and simple
/// embedders).
impl<T> Collect<T> for Vec<(u64, T)> {
    fn output(&mut self, seq: u64, _kind: OutputKind, item: T) {
        self.push((seq, item));
    }
}
