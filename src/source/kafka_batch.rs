//! A topic partition's queue read in batches: librdkafka's `rd_kafka_consume_batch_queue`,
//! which `rdkafka` does not expose.
//!
//! Polling a queue one message at a time costs librdkafka three clock reads, a queue lock
//! and a partition lock per message (and `rdkafka`'s `poll` one more clock read): about
//! half a microsecond, the whole cost of a raw consumer. A batch pays the clock reads and
//! the partition's position update once; each message is read where librdkafka put it
//! ([`RawMessage`]) and destroyed once the next is asked for.
//!
//! The queue is the partition's own (split from the consumer's queue by
//! `BaseConsumer::split_partition_queue` first, which also keeps its non-empty callback);
//! this is a second handle to it.

use std::ffi::CString;
use std::os::raw::c_int;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// A partition queue and the messages taken from it and not yet handed out.
pub(crate) struct BatchQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// Taken from the queue, in order; `taken[next..]` not handed out yet. Each is
    /// destroyed once handed out (when the next is asked for) or when the queue is dropped.
    taken: Vec<*mut rd::rd_kafka_message_t>,
    next: usize,
    /// The message handed out last, destroyed when the next is asked for.
    out: Option<NonNull<rd::rd_kafka_message_t>>,
    /// Notified by librdkafka when the queue stops being empty ([`BatchQueue::split`]).
    wakeup: Option<Arc<Wakeup>>,
}

// SAFETY: librdkafka's queues and messages may be used from any thread (one at a time,
// which `&mut self` ensures); nothing here is tied to the thread that made it.
unsafe impl Send for BatchQueue {}

impl BatchQueue {
    /// A handle to the queue of `topic`/`partition` of `consumer`; `None` when librdkafka
    /// has none (a topic name with a NUL byte, or not a consumer). The consumer must
    /// outlive the handle: keep it declared (dropped) before the consumer.
    pub(crate) fn open<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> Option<BatchQueue> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is valid while `consumer` lives; the topic is a
        // NUL-terminated string that outlives the call.
        let queue = unsafe {
            rd::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            )
        };
        Some(BatchQueue {
            queue: NonNull::new(queue)?,
            taken: Vec::new(),
            next: 0,
            out: None,
            wakeup: None,
        })
    }

    /// The queue of `topic`/`partition` of `consumer`, split from the consumer's queue
    /// (as `BaseConsumer::split_partition_queue` does: its messages and end notices stay
    /// in it, over every later assignment of the partition), with `wakeup` notified each
    /// time it stops being empty; `None` when librdkafka has none. Call it before the
    /// consumer subscribes. The consumer must outlive the queue, as for
    /// [`BatchQueue::open`].
    pub(crate) fn split<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
        wakeup: Arc<Wakeup>,
    ) -> Option<BatchQueue> {
        let mut q = BatchQueue::open(consumer, topic, partition)?;
        // SAFETY: a live queue handle; forwarding to nothing keeps the messages here
        // (librdkafka marks the forward as the application's, which fetching again does
        // not undo). The callback's opaque pointer is `wakeup`'s, kept alive in the
        // queue until the callback is turned off (`Drop`).
        unsafe {
            rd::rd_kafka_queue_forward(q.queue.as_ptr(), std::ptr::null_mut());
            rd::rd_kafka_queue_cb_event_enable(
                q.queue.as_ptr(),
                Some(wake_up),
                Arc::as_ptr(&wakeup).cast_mut().cast(),
            );
        }
        q.wakeup = Some(wakeup);
        Some(q)
    }

    /// The next message: one taken earlier, else up to `up_to` more taken from the queue
    /// without waiting; `None` when the queue is empty. The message handed out before is
    /// destroyed.
    pub(crate) fn next_message(&mut self, up_to: usize) -> Option<RawMessage<'_>> {
        self.release_out();
        if self.next == self.taken.len() {
            self.fill(up_to.max(1));
        }
        let m = NonNull::new(*self.taken.get(self.next)?)?;
        self.next += 1;
        self.out = Some(m);
        // The payload after this one was written by librdkafka's fetch thread: ask for it
        // now, so that it is in cache when its turn comes (a record later).
        if let Some(&after) = self.taken.get(self.next) {
            // SAFETY: a message taken from the queue and not destroyed (`taken[next..]`).
            let (payload, len) = unsafe { ((*after).payload, (*after).len) };
            if !payload.is_null() {
                crate::event::prefetch(payload.cast::<u8>());
                if len > 64 {
                    // SAFETY: within the payload's `len` bytes.
                    crate::event::prefetch(unsafe { payload.cast::<u8>().add(64) });
                }
            }
        }
        // SAFETY: `m` is a live message of this queue until `release_out`, which needs
        // `&mut self`: the view's borrow of `self` keeps it alive.
        Some(RawMessage {
            msg: unsafe { m.as_ref() },
        })
    }

    /// Destroys every message taken and not handed out: the consumer is to read from
    /// another offset (a seek), where they may come again.
    pub(crate) fn discard(&mut self) {
        self.release_out();
        for m in self.taken.drain(self.next..) {
            // SAFETY: taken from the queue and never handed out or destroyed.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
        self.taken.clear();
        self.next = 0;
    }

    fn release_out(&mut self) {
        if let Some(m) = self.out.take() {
            // SAFETY: handed out last and not destroyed since (`out` is taken once).
            unsafe { rd::rd_kafka_message_destroy(m.as_ptr()) };
        }
    }

    fn fill(&mut self, up_to: usize) {
        self.taken.clear();
        self.next = 0;
        self.taken.reserve(up_to);
        // SAFETY: the queue handle is live; librdkafka writes at most `up_to` message
        // pointers into the reserved capacity and says how many.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                0 as c_int,
                self.taken.as_mut_ptr(),
                up_to,
            )
        };
        if let Ok(n) = usize::try_from(n) {
            // SAFETY: librdkafka initialised the first `n` (≤ `up_to`) elements.
            unsafe { self.taken.set_len(n.min(up_to)) };
        }
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        if self.wakeup.is_some() {
            // SAFETY: the handle is live; after this librdkafka calls no callback with
            // the wakeup's pointer, which is then dropped with `self`.
            unsafe {
                rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut())
            };
        }
        self.discard();
        // SAFETY: the handle is live and dropped once.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// Wakes a reader waiting for its queues when one of them gets something (librdkafka
/// calls a queue's callback from its own threads when the queue stops being empty).
#[derive(Default)]
pub(crate) struct Wakeup {
    ready: Mutex<bool>,
    cond: Condvar,
}

impl Wakeup {
    pub(crate) fn notify(&self) {
        if let Ok(mut ready) = self.ready.lock() {
            *ready = true;
        }
        self.cond.notify_one();
    }

    /// Forgets earlier wake-ups: call before looking at the queues.
    pub(crate) fn clear(&self) {
        if let Ok(mut ready) = self.ready.lock() {
            *ready = false;
        }
    }

    /// Sleeps up to `timeout` unless woken since the last [`Wakeup::clear`].
    pub(crate) fn wait(&self, timeout: Duration) {
        let Ok(ready) = self.ready.lock() else {
            return;
        };
        if !*ready {
            let _ = self.cond.wait_timeout(ready, timeout);
        }
    }
}

/// librdkafka's queue event callback: `opaque` is the queue's [`Wakeup`].
unsafe extern "C" fn wake_up(_: *mut rd::rd_kafka_t, opaque: *mut std::ffi::c_void) {
    // SAFETY: set by `BatchQueue::split` to a `Wakeup` that outlives the callback.
    if let Some(w) = unsafe { opaque.cast::<Wakeup>().as_ref() } {
        w.notify();
    }
}

/// A message (or an error, or a partition's end) taken from a [`BatchQueue`], read in place.
pub(crate) struct RawMessage<'a> {
    msg: &'a rd::rd_kafka_message_t,
}

impl RawMessage<'_> {
    /// The error this message stands for, if it is one (the partition's end is
    /// [`RDKafkaErrorCode::PartitionEOF`]).
    pub(crate) fn error(&self) -> Option<KafkaError> {
        match self.msg.err {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => None,
            e => Some(KafkaError::MessageConsumption(RDKafkaErrorCode::from(e))),
        }
    }

    /// Whether this is the notice of the partition's end.
    pub(crate) fn is_partition_end(&self) -> bool {
        self.msg.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF
    }
}

impl super::kafka::MessageParts for RawMessage<'_> {
    fn offset(&self) -> i64 {
        self.msg.offset
    }

    fn payload(&self) -> Option<&[u8]> {
        bytes(self.msg.payload, self.msg.len)
    }

    fn key(&self) -> Option<&[u8]> {
        bytes(self.msg.key, self.msg.key_len)
    }

    fn timestamp_ms(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live; librdkafka writes the timestamp's type to `kind`.
        let ms = unsafe { rd::rd_kafka_message_timestamp(self.msg, &mut kind) };
        // As `rdkafka`'s `Timestamp::to_millis`: -1 is none.
        (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ms != -1)
            .then_some(ms)
    }
}

/// `len` bytes at `ptr` (librdkafka's payload or key), `None` for a null pointer.
fn bytes<'a>(ptr: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: librdkafka's message holds `len` bytes at `ptr` while it lives, which the
    // caller's borrow of the message ensures.
    Some(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}
