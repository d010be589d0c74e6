"""First-boot provisioning from a config stick: validate everything, then apply all or nothing."""
