"""Every IRI and namespace the consent package writes, in one place.

Our own names live under ``https://civic-vault.example/`` (the deployment's base; a real city
replaces the host, the paths stay). Things that are not web resources (citizens, departments,
clients, terms versions) get ``urn:civic-vault:`` names built from their opaque ids; ids are
restricted to URL-safe characters (see :data:`ID_PATTERN`), so the names need no escaping and
parse back unambiguously.
"""

from __future__ import annotations

import re

TERMS_SCHEMA = "https://civic-vault.example/schemas/consent-terms/1"
# The schema (and version) of :class:`consent.terms.ConsentTerms`; part of the signed body.

EVENT_SCHEMA = "https://civic-vault.example/schemas/consent-event/1"
# The schema of :class:`consent.terms.ConsentEvent`; part of each signed event.

PROFILE = "https://civic-vault.example/ns/consent-profile/1"
# Our ODRL profile (documented in docs/consent-profile.md).

CV = PROFILE + "#"
# Namespace of the profile's terms (prefix ``cv``), e.g. ``cv:epsilonPerPeriod``.

PURPOSES = "https://civic-vault.example/purposes/"
STREAMS = "https://civic-vault.example/streams/"

ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"
ODRL = "http://www.w3.org/ns/odrl/2/"
DPV = "https://w3id.org/dpv#"
EU_GDPR = "https://w3id.org/dpv/legal/eu/gdpr#"
LOC = "https://w3id.org/dpv/loc#"
DCT = "http://purl.org/dc/terms/"
SKOS = "http://www.w3.org/2004/02/skos/core#"
XSD = "http://www.w3.org/2001/XMLSchema#"
SCHEMA_ORG = "https://schema.org/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

PREFIXES: dict[str, str] = {
    "cv": CV,
    "dpv": DPV,
    "eu-gdpr": EU_GDPR,
    "loc": LOC,
    "dct": DCT,
    "skos": SKOS,
    "xsd": XSD,
    "schema": SCHEMA_ORG,
    "rdf": RDF,
}
# JSON-LD prefixes used by every export (compact IRIs such as ``dpv:ConsentGiven``).

ISO27560_SCHEMA = "https://w3id.org/dpv/schema/dpv-27560#record"
# DPV's profile of ISO/IEC TS 27560 consent records (the ``schema_version`` of our records).

KANTARA_VERSION = "KI-CR-v1.1.0"

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
# Opaque ids (terms, subjects, departments, clients, requests, controller): 1 to 128 URL-safe
# characters, starting with a letter or digit.

_URN = "urn:civic-vault:"


def terms_uid(terms_id: str, version: int) -> str:
    """The IRI naming one version of one consent, e.g. ``urn:civic-vault:consent-terms:ab12:3``."""
    return f"{_URN}consent-terms:{terms_id}:{version}"


def parse_terms_uid(uid: str) -> tuple[str, int] | None:
    """``(terms_id, version)`` from :func:`terms_uid`'s output, or ``None``."""
    prefix = f"{_URN}consent-terms:"
    if not uid.startswith(prefix):
        return None
    terms_id, _, version = uid[len(prefix) :].rpartition(":")
    if not terms_id or not version.isdigit():
        return None
    return terms_id, int(version)


def entity_iri(kind: str, entity_id: str) -> str:
    """``urn:civic-vault:{kind}:{id}`` for ``citizen``, ``department``, ``client``, ``controller``."""
    return f"{_URN}{kind}:{entity_id}"


def parse_entity_iri(iri: str) -> tuple[str, str] | None:
    """``(kind, id)`` from :func:`entity_iri`'s output, or ``None``."""
    if not iri.startswith(_URN):
        return None
    kind, sep, entity_id = iri[len(_URN) :].partition(":")
    if not sep or not entity_id:
        return None
    return kind, entity_id


def expand(curie: str) -> str:
    """A compact IRI (``dpv:ConsentGiven``) in full; an IRI that is not compact is returned as is."""
    prefix, sep, local = curie.partition(":")
    if sep and prefix in PREFIXES and not local.startswith("//"):
        return PREFIXES[prefix] + local
    return curie


def compact(iri: str) -> str:
    """The compact form (``dpv:ConsentGiven``) of an IRI under one of :data:`PREFIXES`."""
    for prefix, namespace in PREFIXES.items():
        if iri.startswith(namespace) and len(iri) > len(namespace):
            return f"{prefix}:{iri[len(namespace) :]}"
    return iri
