"""What the three scripts share, one job per module:

- settings: defaults, flags and environment variables, the properties file, client configs;
- client_health: client errors without flooding, fatal errors, and the stranded-client check;
- commits: synchronous, bounded commits of explicit offsets, and failed ones kept for a retry;
- at_least_once: the other steps of the consumers' loops (open, decode or skip, rewind, back
  off, when to stop, close);
- lifecycle: log format, signals, exit statuses, and the record log.
"""
