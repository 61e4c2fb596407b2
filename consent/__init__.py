"""Consent terms: machine-readable, signed, enforceable. Pure Python, no I/O, no project imports.

Modules (see docs/consent.md and docs/consent-profile.md):

* :mod:`consent.terms`: the versioned :class:`~consent.terms.ConsentTerms` model, validation,
  events and status, narrowing, department :class:`~consent.terms.DataRequest` s;
* :mod:`consent.signing`: Ed25519 signatures of terms and events by the citizen's key;
* :mod:`consent.decision`: :func:`~consent.decision.decide`, the one place that decides consent;
* :mod:`consent.summary`: plain-language summaries (English, Spanish);
* :mod:`consent.exports`: ODRL 2.2 (with DPV and our profile), ISO/IEC TS 27560, Kantara CR 1.1;
* :mod:`consent.data_catalogue`, :mod:`consent.purposes`, :mod:`consent.request_templates`:
  what exists, the city's purposes, the shipped requests (data passed in or kept as constants);
* :mod:`consent.canonical`: the project's one canonical JSON encoding;
* :mod:`consent.errors`: :class:`~consent.errors.TermsInvalid`,
  :class:`~consent.errors.NarrowingRefused`, :class:`~consent.errors.SignatureInvalid`.
"""
