"""ftbot's Slack surface: the Bolt app, its listeners, the HTTP server and the CLI."""
