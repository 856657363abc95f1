"""What comes into the tracker: one module per way in, all onto the same bounded queue.

- `tracker.ingest.mqtt`: the MQTT client (the buses' own topic, OwnTracks' topics);
- `tracker.ingest.queue`: the bounded per-vehicle queue between them and the pipeline;
- `tracker.ingest.phones`: the phone apps' messages (OsmAnd, Traccar Client, OwnTracks), read for
  the HTTP endpoints (`tracker.api.ingest`) and the MQTT decoder (`tracker.wire`);
- `tracker.ingest.devices`: the devices file, phones to vehicles;
- `tracker.ingest.gtfs_rt_poll`: agencies' GTFS-realtime VehiclePositions feeds, polled;
- `tracker.ingest.broker`: the embedded demo broker.

Import from the modules themselves; this package module imports nothing, so that any of them
may import another without a cycle.
"""
