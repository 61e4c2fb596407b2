"""The city's purpose vocabulary and the legal bases terms may name, kept as data.

Each purpose has our own identifier (``energy-planning``), plain English and Spanish text that
completes the sentence "... may use your data to *<text>*", and a parent in the W3C Data Privacy
Vocabulary (DPV 2.x, namespace ``https://w3id.org/dpv#``) so that other systems can read it:

=====================  ===============================  ==========================================
id                     DPV parent                       why this parent
=====================  ===============================  ==========================================
energy-planning        dpv:CombatClimateChange          cutting energy waste and emissions
mobility-planning      dpv:ImproveTransportMobility     improving transport and traffic
noise-mapping          dpv:PublicPolicyMaking           noise maps feed noise action plans
service-quality        dpv:ImprovePublicServices        improving the city's services
official-statistics    dpv:ProvideOfficialStatistics    official statistics about the city
research               dpv:ScientificResearch           research (a dpv:ResearchAndDevelopment)
=====================  ===============================  ==========================================

All six parents are DPV purposes (checked against the DPV 2.0 purposes taxonomy; all but
ScientificResearch sit under ``dpv:PublicBenefit``).

Legal bases are modelled *per purpose* (GDPR Recital 43: consent given to a public authority can
be invalid where the power is unequal, so a city may need another basis for some purposes and the
citizen's agreement then acts as an additional safeguard). :data:`LEGAL_BASES` lists the ones the
terms accept, as DPV / DPV-GDPR concepts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

# (id, DPV parent, default legal basis, English label, Spanish label, English text, Spanish text)
_PURPOSE_DATA = (
    (
        "energy-planning",
        "dpv:CombatClimateChange",
        "eu-gdpr:A6-1-a",
        "Energy planning",
        "Planificación energética",
        "plan the city's energy supply and cut energy waste",
        "planificar el suministro de energía de la ciudad y reducir el derroche de energía",
    ),
    (
        "mobility-planning",
        "dpv:ImproveTransportMobility",
        "eu-gdpr:A6-1-a",
        "Mobility planning",
        "Planificación de la movilidad",
        "plan public transport, cycle lanes and streets",
        "planificar el transporte público, los carriles bici y las calles",
    ),
    (
        "noise-mapping",
        "dpv:PublicPolicyMaking",
        "eu-gdpr:A6-1-a",
        "Noise mapping",
        "Mapa de ruido",
        "map noise across the city and decide where to reduce it",
        "hacer un mapa del ruido de la ciudad y decidir dónde reducirlo",
    ),
    (
        "service-quality",
        "dpv:ImprovePublicServices",
        "eu-gdpr:A6-1-a",
        "Quality of city services",
        "Calidad de los servicios municipales",
        "find out how well the city's services work and improve them",
        "saber cómo funcionan los servicios municipales y mejorarlos",
    ),
    (
        "official-statistics",
        "dpv:ProvideOfficialStatistics",
        "eu-gdpr:A6-1-a",
        "Official statistics",
        "Estadística oficial",
        "publish official statistics about the city",
        "publicar estadísticas oficiales sobre la ciudad",
    ),
    (
        "research",
        "dpv:ScientificResearch",
        "eu-gdpr:A6-1-a",
        "Research",
        "Investigación",
        "support scientific research about life in the city",
        "apoyar la investigación científica sobre la vida en la ciudad",
    ),
    (
        # What a third-party app a citizen connected does for that citizen (OAuth consents).
        "personal-service",
        "dpv:ServiceProvision",
        "eu-gdpr:A6-1-a",
        "A service you chose",
        "Un servicio que elegiste",
        "provide the service of an app you connected",
        "darte el servicio de una aplicación que conectaste",
    ),
)

LEGAL_BASES: dict[str, str] = {
    "eu-gdpr:A6-1-a": "consent (GDPR Art. 6(1)(a))",
    "eu-gdpr:A6-1-a-explicit-consent": "explicit consent (GDPR Art. 6(1)(a))",
    "eu-gdpr:A6-1-e-public-interest": "a task in the public interest (GDPR Art. 6(1)(e))",
    "dpv:Consent": "consent",
}
# Legal bases a purpose in the terms may name (DPV-GDPR and DPV concepts, compact form).

CONSENT_LEGAL_BASES = frozenset(
    {"eu-gdpr:A6-1-a", "eu-gdpr:A6-1-a-explicit-consent", "dpv:Consent"}
)
# The legal bases above that are consent (the others are recorded, and the citizen's terms are
# still enforced as an additional safeguard).

LANGUAGES = ("en", "es")


@dataclass(frozen=True, slots=True)
class PurposeDefinition:
    """One purpose of the city's vocabulary."""

    id: str
    dpv_parent: str
    default_legal_basis: str
    label_en: str
    label_es: str
    text_en: str
    text_es: str

    def label(self, language: str) -> str:
        """A short title, e.g. "Energy planning" (English unless ``language`` is ``es``)."""
        return self.label_es if language == "es" else self.label_en

    def text(self, language: str) -> str:
        """Plain words completing "... may use your data to <text>"."""
        return self.text_es if language == "es" else self.text_en


@dataclass(frozen=True, slots=True)
class PurposeVocabulary:
    """A set of purposes; :func:`city_purposes` gives the city's."""

    purposes: tuple[PurposeDefinition, ...]

    def get(self, purpose_id: str) -> PurposeDefinition | None:
        """The purpose called ``purpose_id``, or ``None``."""
        return next((p for p in self.purposes if p.id == purpose_id), None)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.purposes)


@functools.cache
def city_purposes() -> PurposeVocabulary:
    """The city's purpose vocabulary (built on first use, then shared: it is immutable)."""
    return PurposeVocabulary(tuple(PurposeDefinition(*row) for row in _PURPOSE_DATA))
