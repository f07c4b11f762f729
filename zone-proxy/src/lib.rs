//! The SNI router shared by the zone ingress and the zone egress.
