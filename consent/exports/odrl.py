"""Consent terms as an ODRL 2.2 Agreement in JSON-LD, with DPV terms and our profile; and back.

:func:`to_odrl` writes one ``Agreement``:

* ``uid`` names the terms version; ``profile`` is our profile IRI (:data:`consent.iris.PROFILE`,
  documented in docs/consent-profile.md); ``assigner`` is the citizen (pseudonymous IRI);
* one ``permission`` per recipient and stream type: ``assignee`` the recipient, ``target`` an
  ``AssetCollection`` whose ``source`` is the stream type and whose ``refinement`` lists the
  covered fields (``cv:field isAnyOf [...]``), ``action`` ``use`` for statistics-only terms or
  ``read`` for an app's raw access (plus ``modify`` when it may append), and the constraints:
  ``dateTime gteq`` / ``lt`` (validity), ``purpose isAnyOf`` (our purpose IRIs, each declared a
  ``skos:broader`` of its DPV parent under ``cv:purposes``) and, for statistics, the profile's
  ``cv:epsilonPerPeriod lteq``, ``cv:period eq``, ``cv:minGroupSize gteq``,
  ``cv:maxReleasesPerPeriod lteq``, ``cv:allowedStatistic isAnyOf``, ``cv:groupBy isAnyOf``;
* for statistics-only terms, one ``prohibition`` per permission: ``distribute`` (no raw data
  leaves the vault);
* everything else the terms say (controller, jurisdiction, law, notice, withdrawal, versions) as
  DPV / Dublin Core properties of the policy, and the citizen's signature under ``cv:signature``
  when the source was signed.

:func:`from_odrl` reads such a policy back into equal terms (the round trip is tested). It refuses
a policy whose ``profile`` is missing or not ours (an ODRL processor must not process a policy
under a profile it does not know), any constraint whose left operand or operator it does not
know, and any policy our terms cannot express (different constraints or data per recipient):
:class:`~consent.errors.TermsInvalid` naming the place and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from consent.errors import Problem, TermsInvalid, problem
from consent.exports._common import (
    controller_iri,
    purpose_iri,
    recipient_iri,
    split,
    stream_iri,
    subject_iri,
)
from consent.iris import (
    ODRL,
    ODRL_CONTEXT,
    PREFIXES,
    PROFILE,
    PURPOSES,
    STREAMS,
    compact,
    parse_entity_iri,
    parse_terms_uid,
    terms_uid,
)
from consent.signing import SignedTerms
from consent.terms import ConsentTerms, DataCategory, Recipient, iso_utc, parse_terms

_SIGNED_CONTENT = (
    "Ed25519 over the canonical JSON (consent/canonical.py, RFC 8785 rules) of the terms' signed "
    "body, schema https://civic-vault.example/schemas/consent-terms/1"
)


def _literal(value: Any, datatype: str) -> dict[str, Any]:
    return {"@value": value, "@type": datatype}


def _constraints(terms: ConsentTerms) -> list[dict[str, Any]]:
    v = terms.validity
    out: list[dict[str, Any]] = [
        {
            "leftOperand": "dateTime",
            "operator": "gteq",
            "rightOperand": _literal(iso_utc(v.not_before), "xsd:dateTime"),
        },
        {
            "leftOperand": "dateTime",
            "operator": "lt",
            "rightOperand": _literal(iso_utc(v.not_after), "xsd:dateTime"),
        },
        {
            "leftOperand": "purpose",
            "operator": "isAnyOf",
            "rightOperand": [{"@id": purpose_iri(p.id)} for p in terms.purposes],
        },
    ]
    limits = terms.dp_limits
    if limits is not None:
        out += [
            {
                "leftOperand": "cv:epsilonPerPeriod",
                "operator": "lteq",
                "rightOperand": _literal(limits.epsilon_per_period, "xsd:double"),
            },
            {
                "leftOperand": "cv:period",
                "operator": "eq",
                "rightOperand": _literal(limits.period, "xsd:duration"),
            },
            {
                "leftOperand": "cv:minGroupSize",
                "operator": "gteq",
                "rightOperand": _literal(limits.min_group_size, "xsd:integer"),
            },
            {
                "leftOperand": "cv:maxReleasesPerPeriod",
                "operator": "lteq",
                "rightOperand": _literal(limits.max_releases_per_period, "xsd:integer"),
            },
            {
                "leftOperand": "cv:allowedStatistic",
                "operator": "isAnyOf",
                "rightOperand": list(terms.statistics),
            },
            {
                "leftOperand": "cv:groupBy",
                "operator": "isAnyOf",
                "rightOperand": list(terms.group_by),
            },
        ]
    return out


def _target(stream_type: str, fields: tuple[str, ...]) -> dict[str, Any]:
    return {
        "@type": "AssetCollection",
        "source": stream_iri(stream_type),
        "refinement": [
            {"leftOperand": "cv:field", "operator": "isAnyOf", "rightOperand": list(fields)}
        ],
    }


def _rule(
    subject: str, recipient: Recipient, category: DataCategory, action: str
) -> dict[str, Any]:
    return {
        "assigner": subject,
        "assignee": recipient_iri(recipient),
        "target": _target(category.stream_type, category.fields),
        "action": action,
    }


def to_odrl(source: SignedTerms | ConsentTerms) -> dict[str, Any]:
    """The terms as an ODRL 2.2 ``Agreement`` (JSON-LD dict; see the module docstring)."""
    terms, signed = split(source)
    subject = subject_iri(terms)
    dp = terms.processing.mode == "dp_aggregate"
    actions = ["use"] if dp else ["read"] + (["modify"] if terms.processing.append else [])
    permissions: list[dict[str, Any]] = []
    prohibitions: list[dict[str, Any]] = []
    for recipient in terms.recipients:
        for category in terms.data_categories:
            # Fresh objects for every rule: a caller editing one rule edits only that rule.
            permissions += [
                {**_rule(subject, recipient, category, a), "constraint": _constraints(terms)}
                for a in actions
            ]
            if dp:
                prohibitions.append(_rule(subject, recipient, category, "distribute"))
    c = terms.controller
    policy: dict[str, Any] = {
        "@context": [ODRL_CONTEXT, dict(PREFIXES)],
        "@type": "Agreement",
        "uid": terms_uid(terms.id, terms.version),
        "profile": PROFILE,
        "dct:identifier": terms.id,
        "cv:termsVersion": terms.version,
        "dct:conformsTo": {"@id": terms.schema_iri},
        "assigner": subject,
        "dpv:hasDataController": {
            "@id": controller_iri(terms),
            "@type": ["Party", "dpv:DataController"],
            "dct:identifier": c.id,
            "schema:name": c.name,
            "schema:contactPoint": {
                "@type": "schema:ContactPoint",
                "schema:name": c.contact,
                "schema:email": c.email,
                "schema:telephone": c.phone,
            },
            "schema:address": {
                "@type": "schema:PostalAddress",
                "schema:streetAddress": c.street_address,
                "schema:addressLocality": c.locality,
                "schema:postalCode": c.postal_code,
                "schema:addressCountry": c.country,
            },
            "schema:url": c.url,
        },
        "dpv:hasJurisdiction": {"@id": f"loc:{terms.jurisdiction}"},
        "dpv:hasApplicableLaw": {"@id": terms.applicable_law},
        "cv:purposes": [
            {
                "@id": purpose_iri(p.id),
                "@type": "dpv:Purpose",
                "skos:broader": {"@id": p.dpv_parent},
                "dpv:hasLegalBasis": {"@id": p.legal_basis},
            }
            for p in terms.purposes
        ],
        "dpv:hasNotice": {
            "@id": terms.notice.url,
            "@type": "dpv:ConsentNotice",
            "dct:hasVersion": terms.notice.version,
            "cv:sha256": terms.notice.sha256,
            "dct:language": terms.notice.language,
        },
        "dpv:hasConsentControl": {
            "@type": "dpv:WithdrawConsent",
            "dpv:isExercisedAt": {"@id": terms.withdrawal.url},
            "dct:description": terms.withdrawal.instructions,
        },
        "permission": permissions,
    }
    if prohibitions:
        policy["prohibition"] = prohibitions
    if terms.supersedes is not None:
        policy["dct:replaces"] = {
            "@id": terms_uid(terms.supersedes.id, terms.supersedes.version),
            "cv:termsDigest": terms.supersedes.digest,
        }
    if terms.based_on is not None:
        policy["cv:basedOnRequest"] = {
            "dct:identifier": terms.based_on.id,
            "cv:requestVersion": terms.based_on.version,
        }
    if signed is not None:
        policy["cv:signature"] = {
            "cv:algorithm": "Ed25519",
            "cv:signatureValue": signed.signature,
            "cv:publicKey": signed.public_key,
            "cv:keyId": signed.key_id,
            "cv:signedContent": _SIGNED_CONTENT,
        }
    return policy


# --------------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _get(obj: Any, key: str, path: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise _Bad(f"{path}.{key}" if path else key, "is missing")
    return obj[key]


def _id_of(value: Any, path: str) -> str:
    """An IRI given as a string or as ``{"@id": ...}``, in compact form when it can be."""
    if isinstance(value, Mapping):
        value = value.get("@id", value.get("uid"))
    if not isinstance(value, str) or not value:
        raise _Bad(path, "must be an IRI")
    return compact(value)


def _value_of(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        if "@value" not in value:
            raise _Bad(path, "must be a literal")
        return value["@value"]
    return value


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _term(value: Any, path: str) -> str:
    """An ODRL vocabulary term (``use``, ``odrl:use`` or the full IRI) or a profile term."""
    text = _id_of(value, path)
    for prefix in (ODRL, "odrl:"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _check_profile(doc: Mapping[str, Any]) -> None:
    profiles = doc.get("profile")
    if profiles is None:
        raise _Bad("profile", f"missing: this policy must declare the profile {PROFILE}")
    for i, value in enumerate(_list(profiles)):
        iri = value.get("@id") if isinstance(value, Mapping) else value
        if iri != PROFILE:
            raise _Bad(
                f"profile.{i}" if isinstance(profiles, list) else "profile",
                f"unknown ODRL profile {iri!r}: an ODRL processor must not process a policy under "
                f"a profile it does not know (ours is {PROFILE})",
            )


_EXPECTED_OPERATORS = {
    "dateTime": ("gteq", "lt"),
    "purpose": ("isAnyOf",),
    "cv:epsilonPerPeriod": ("lteq",),
    "cv:period": ("eq",),
    "cv:minGroupSize": ("gteq",),
    "cv:maxReleasesPerPeriod": ("lteq",),
    "cv:allowedStatistic": ("isAnyOf",),
    "cv:groupBy": ("isAnyOf",),
}


def _parse_constraints(items: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, item in enumerate(_list(items)):
        where = f"{path}.{i}"
        left = _term(_get(item, "leftOperand", where), f"{where}.leftOperand")
        operator = _term(_get(item, "operator", where), f"{where}.operator")
        right = _get(item, "rightOperand", where)
        if left not in _EXPECTED_OPERATORS:
            raise _Bad(f"{where}.leftOperand", f"unknown left operand {left!r}")
        if operator not in _EXPECTED_OPERATORS[left]:
            raise _Bad(
                f"{where}.operator", f"{left} must use {' or '.join(_EXPECTED_OPERATORS[left])}"
            )
        key = f"{left}.{operator}"
        if key in out:
            raise _Bad(where, f"{left} {operator} appears twice")
        if operator == "isAnyOf":
            values = _list(right)
            if left == "purpose":
                out[key] = [_id_of(v, f"{where}.rightOperand") for v in values]
            else:
                out[key] = [_value_of(v, f"{where}.rightOperand") for v in values]
        else:
            out[key] = _value_of(right, f"{where}.rightOperand")
    return out


def _parse_target(value: Any, path: str) -> tuple[str, tuple[str, ...]]:
    source = _id_of(_get(value, "source", path), f"{path}.source")
    if not source.startswith(STREAMS):
        raise _Bad(f"{path}.source", f"{source!r} is not a stream type of {STREAMS}")
    fields: list[str] = []
    for i, ref in enumerate(_list(_get(value, "refinement", path))):
        where = f"{path}.refinement.{i}"
        if _term(_get(ref, "leftOperand", where), where) != "cv:field":
            raise _Bad(f"{where}.leftOperand", "only cv:field refines a stream type")
        if _term(_get(ref, "operator", where), where) != "isAnyOf":
            raise _Bad(f"{where}.operator", "cv:field must use isAnyOf")
        fields += [str(_value_of(v, where)) for v in _list(_get(ref, "rightOperand", where))]
    return source[len(STREAMS) :], tuple(sorted(fields))


def _recipient(value: Any, path: str) -> tuple[str, str]:
    parsed = parse_entity_iri(_id_of(value, path))
    if parsed is None or parsed[0] not in ("department", "client"):
        raise _Bad(path, "must be a department or client (urn:civic-vault:department:<id>)")
    return parsed


def _rules(doc: Mapping[str, Any], subject: str) -> dict[str, Any]:
    """Recipients, categories, processing and constraints from the permissions."""
    permissions = _list(_get(doc, "permission", ""))
    if not permissions:
        raise _Bad("permission", "the agreement permits nothing")
    grants: dict[str, set[tuple[tuple[str, str], tuple[str, tuple[str, ...]]]]] = {}
    constraints: dict[str, Any] | None = None
    for i, perm in enumerate(permissions):
        where = f"permission.{i}"
        action = _term(_get(perm, "action", where), f"{where}.action")
        if action not in ("use", "read", "modify"):
            raise _Bad(f"{where}.action", f"unknown action {action!r} (use, read or modify)")
        assigner = _id_of(perm.get("assigner", subject), f"{where}.assigner")
        if assigner != subject:
            raise _Bad(f"{where}.assigner", "must be the citizen who assigns the policy")
        who = _recipient(_get(perm, "assignee", where), f"{where}.assignee")
        what = _parse_target(_get(perm, "target", where), f"{where}.target")
        parsed = _parse_constraints(perm.get("constraint", []), f"{where}.constraint")
        if constraints is None:
            constraints = parsed
        elif parsed != constraints:
            raise _Bad(f"{where}.constraint", "differs from the first permission's constraints")
        grants.setdefault(action, set()).add((who, what))
    main = [a for a in ("use", "read") if a in grants]
    if len(main) != 1:
        raise _Bad("permission", "must grant either use (statistics) or read (raw), not both")
    mode = "dp_aggregate" if main[0] == "use" else "raw"
    pairs = grants[main[0]]
    recipients = sorted({who for who, _ in pairs})
    categories = sorted({what for _, what in pairs})
    if len(pairs) != len(recipients) * len(categories):
        raise _Bad("permission", "every recipient must be granted the same streams and fields")
    if "modify" in grants and (mode != "raw" or grants["modify"] != pairs):
        raise _Bad("permission", "modify (append) goes only with read, for the same app and data")
    for i, prohibition in enumerate(_list(doc.get("prohibition", []))):
        where = f"prohibition.{i}"
        if _term(_get(prohibition, "action", where), f"{where}.action") != "distribute":
            raise _Bad(f"{where}.action", "only distribute may be prohibited")
        if mode != "dp_aggregate":
            raise _Bad(where, "raw access carries no prohibition in these terms")
    if constraints is None:  # pragma: no cover - the loop above ran at least once
        raise _Bad("permission", "the agreement permits nothing")
    app = recipients[0][1] if mode == "raw" and len(recipients) == 1 else None
    return {
        "recipients": [{"kind": k, "id": i} for k, i in recipients],
        "data_categories": [{"stream_type": s, "fields": list(f)} for s, f in categories],
        "processing": {"mode": mode, "app": app, "append": "modify" in grants},
        "constraints": constraints,
    }


def _purposes(doc: Mapping[str, Any], constrained: list[str] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, item in enumerate(_list(_get(doc, "cv:purposes", ""))):
        where = f"cv:purposes.{i}"
        iri = _id_of(item, where)
        if not iri.startswith(PURPOSES):
            raise _Bad(where, f"{iri!r} is not a purpose of {PURPOSES}")
        out.append(
            {
                "id": iri[len(PURPOSES) :],
                "dpv_parent": _id_of(_get(item, "skos:broader", where), f"{where}.skos:broader"),
                "legal_basis": _id_of(
                    _get(item, "dpv:hasLegalBasis", where), f"{where}.dpv:hasLegalBasis"
                ),
            }
        )
    declared = sorted(purpose_iri(p["id"]) for p in out)
    if constrained is not None and sorted(constrained) != declared:
        raise _Bad("cv:purposes", "must declare exactly the purposes the constraints name")
    return out


_T = TypeVar("_T")


def _section(problems: list[Problem], build: Callable[[], _T]) -> _T | None:
    try:
        return build()
    except _Bad as exc:
        problems.append(problem(exc.path, exc.reason))
        return None


def _terms_dict(doc: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(doc, Mapping):
        raise TermsInvalid([problem("$", "an ODRL policy must be a JSON object")])
    try:
        _check_profile(doc)
        kind = _term(_get(doc, "@type", ""), "@type")
        if kind != "Agreement":
            raise _Bad("@type", f"must be Agreement, not {kind!r}")
        uid = parse_terms_uid(_id_of(_get(doc, "uid", ""), "uid"))
        if uid is None:
            raise _Bad("uid", "is not the name of a consent terms version")
    except _Bad as exc:
        raise TermsInvalid([problem(exc.path, exc.reason)]) from None
    problems: list[Problem] = []
    subject_ref = _section(problems, lambda: _id_of(_get(doc, "assigner", ""), "assigner"))
    subject_id = ""
    if subject_ref is not None:
        parsed = parse_entity_iri(subject_ref)
        if parsed is None or parsed[0] != "citizen":
            problems.append(
                problem("assigner", "must be the citizen (urn:civic-vault:citizen:<id>)")
            )
        else:
            subject_id = parsed[1]
    rules = _section(problems, lambda: _rules(doc, subject_ref or ""))
    constraints: dict[str, Any] = rules["constraints"] if rules else {}
    constrained = constraints.get("purpose.isAnyOf", []) if rules else None
    purposes = _section(problems, lambda: _purposes(doc, constrained))
    controller = _section(problems, lambda: _controller(doc))
    notice = _section(problems, lambda: _notice(doc))
    withdrawal = _section(problems, lambda: _withdrawal(doc))
    extras = _section(problems, lambda: _identity(doc))
    if problems or rules is None or extras is None:
        raise TermsInvalid(problems)
    terms_id, version = uid
    if extras["id"] != terms_id or extras["version"] != version:
        raise TermsInvalid([problem("uid", "does not match dct:identifier and cv:termsVersion")])
    has_limits = "cv:epsilonPerPeriod.lteq" in constraints
    return {
        "schema": extras["schema"],
        "id": terms_id,
        "version": version,
        "supersedes": extras["supersedes"],
        "based_on": extras["based_on"],
        "subject": subject_id,
        "controller": controller,
        "jurisdiction": extras["jurisdiction"],
        "applicable_law": extras["applicable_law"],
        "purposes": purposes,
        "data_categories": rules["data_categories"],
        "recipients": rules["recipients"],
        "processing": rules["processing"],
        "statistics": constraints.get("cv:allowedStatistic.isAnyOf", []),
        "dp_limits": {
            "epsilon_per_period": constraints.get("cv:epsilonPerPeriod.lteq"),
            "period": constraints.get("cv:period.eq"),
            "min_group_size": constraints.get("cv:minGroupSize.gteq"),
            "max_releases_per_period": constraints.get("cv:maxReleasesPerPeriod.lteq"),
        }
        if has_limits
        else None,
        "group_by": constraints.get("cv:groupBy.isAnyOf", []),
        "validity": {
            "not_before": constraints.get("dateTime.gteq"),
            "not_after": constraints.get("dateTime.lt"),
        },
        "notice": notice,
        "withdrawal": withdrawal,
    }


def _identity(doc: Mapping[str, Any]) -> dict[str, Any]:
    replaces = doc.get("dct:replaces")
    supersedes = None
    if replaces is not None:
        ref = parse_terms_uid(_id_of(replaces, "dct:replaces"))
        if ref is None:
            raise _Bad("dct:replaces", "is not the name of a consent terms version")
        supersedes = {
            "id": ref[0],
            "version": ref[1],
            "digest": _get(replaces, "cv:termsDigest", "dct:replaces"),
        }
    request = doc.get("cv:basedOnRequest")
    based_on = None
    if request is not None:
        based_on = {
            "id": _get(request, "dct:identifier", "cv:basedOnRequest"),
            "version": _get(request, "cv:requestVersion", "cv:basedOnRequest"),
        }
    jurisdiction = _id_of(_get(doc, "dpv:hasJurisdiction", ""), "dpv:hasJurisdiction")
    if not jurisdiction.startswith("loc:"):
        raise _Bad("dpv:hasJurisdiction", "must be a DPV location (loc:...)")
    return {
        "id": _get(doc, "dct:identifier", ""),
        "version": _get(doc, "cv:termsVersion", ""),
        "schema": _id_of(_get(doc, "dct:conformsTo", ""), "dct:conformsTo"),
        "supersedes": supersedes,
        "based_on": based_on,
        "jurisdiction": jurisdiction[len("loc:") :],
        "applicable_law": _id_of(_get(doc, "dpv:hasApplicableLaw", ""), "dpv:hasApplicableLaw"),
    }


def _controller(doc: Mapping[str, Any]) -> dict[str, Any]:
    c = _get(doc, "dpv:hasDataController", "")
    base = "dpv:hasDataController"
    contact = _get(c, "schema:contactPoint", base)
    address = _get(c, "schema:address", base)
    return {
        "id": _get(c, "dct:identifier", base),
        "name": _get(c, "schema:name", base),
        "contact": _get(contact, "schema:name", f"{base}.schema:contactPoint"),
        "email": _get(contact, "schema:email", f"{base}.schema:contactPoint"),
        "phone": _get(contact, "schema:telephone", f"{base}.schema:contactPoint"),
        "street_address": _get(address, "schema:streetAddress", f"{base}.schema:address"),
        "locality": _get(address, "schema:addressLocality", f"{base}.schema:address"),
        "postal_code": _get(address, "schema:postalCode", f"{base}.schema:address"),
        "country": _get(address, "schema:addressCountry", f"{base}.schema:address"),
        "url": _get(c, "schema:url", base),
    }


def _notice(doc: Mapping[str, Any]) -> dict[str, Any]:
    n = _get(doc, "dpv:hasNotice", "")
    return {
        "url": _id_of(n, "dpv:hasNotice"),
        "version": _get(n, "dct:hasVersion", "dpv:hasNotice"),
        "sha256": _get(n, "cv:sha256", "dpv:hasNotice"),
        "language": _get(n, "dct:language", "dpv:hasNotice"),
    }


def _withdrawal(doc: Mapping[str, Any]) -> dict[str, Any]:
    w = _get(doc, "dpv:hasConsentControl", "")
    return {
        "url": _id_of(_get(w, "dpv:isExercisedAt", "dpv:hasConsentControl"), "dpv:isExercisedAt"),
        "instructions": _get(w, "dct:description", "dpv:hasConsentControl"),
    }


def from_odrl(doc: Mapping[str, Any]) -> ConsentTerms:
    """Terms from an ODRL Agreement written by :func:`to_odrl` (see the module docstring).

    Raises :class:`~consent.errors.TermsInvalid` naming each problem: an unknown or missing
    profile, an unknown left operand or operator, a policy our terms cannot express, or terms that
    are not valid.
    """
    return parse_terms(_terms_dict(doc))


def signed_from_odrl(doc: Mapping[str, Any]) -> SignedTerms:
    """Terms and the citizen's signature from a signed export (verify it before relying on it)."""
    terms = from_odrl(doc)
    block = doc.get("cv:signature")
    try:
        if not isinstance(block, Mapping) or block.get("cv:algorithm") != "Ed25519":
            raise _Bad("cv:signature", "missing, or not an Ed25519 signature")
        return SignedTerms(
            terms=terms,
            signature=str(_get(block, "cv:signatureValue", "cv:signature")),
            public_key=str(_get(block, "cv:publicKey", "cv:signature")),
            key_id=str(_get(block, "cv:keyId", "cv:signature")),
        )
    except _Bad as exc:
        raise TermsInvalid([problem(exc.path, exc.reason)]) from None
