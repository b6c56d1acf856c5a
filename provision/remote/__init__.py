"""Hosts up close over SSH: finding a host by any of its names, connecting to it (through a bastion, host keys
verified), running commands on many hosts at once, and saving a host's diagnostics. Imported only by the verbs that
use it (it loads paramiko)."""
