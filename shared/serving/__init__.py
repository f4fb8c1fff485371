"""The serving layer, the only package that imports gRPC or the generated stubs: wire conversion
(:mod:`.wire`), error mapping and RPC plumbing (:mod:`.rpc`), streams (:mod:`.streaming`), fair
queues and worker stages (:mod:`.fairqueue`), metrics (:mod:`.telemetry`), per-user adapters
(:mod:`.adapters`) and the process entry point (:mod:`.service`)."""
