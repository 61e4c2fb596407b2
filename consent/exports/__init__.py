"""Consent terms in standard vocabularies: ODRL 2.2 (with DPV and our profile), ISO/IEC TS 27560
consent records (through DPV), Kantara Consent Receipt v1.1. See docs/consent-profile.md."""
