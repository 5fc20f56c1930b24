"""Images -> feature shards: the embed job, the read/decode/embed pipeline, the shard files
and the content-addressed feature store."""
