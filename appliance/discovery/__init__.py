"""The box's mDNS record (advertise) and finding boxes on the LAN (browse)."""
