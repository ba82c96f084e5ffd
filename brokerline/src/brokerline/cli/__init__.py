"""What a service's command line is built from: start-up, argument checks, the health probe."""
