//! Parallel execution: the front on the calling thread, shards on worker threads.
