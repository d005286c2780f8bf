"""Pure (sans-I/O) protocol dissectors: fed timestamped bytes, emit typed events. No file, socket or clock access."""
