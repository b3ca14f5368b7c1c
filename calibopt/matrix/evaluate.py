"""Each household's contribution to a target, under the rules of one geography.

A target is ``sum over units of variable x [unit in the stratum]``. The variable lives on an
entity (``snap`` on households, ``employment_income`` on persons, ``tax_unit_count`` counts
tax units); constraints are evaluated on their own variables' entities and combined:

* constraints on the target's entity or on entities containing it (a household constraint
  for a person target) are broadcast down to the target's rows and AND-ed;
* if any constraint lives on a smaller or unrelated entity (a person's age for a household
  count), all constraints are broadcast to persons, AND-ed there, and a target row counts
  when *any* of its persons satisfies them all ("households with a child under 5").

The values (variable x mask) are then summed to households: one number per household, the
household's entry in every column where it is placed. Counting variables ``<entity>_count``
(``person_count``, ``household_count``, ``tax_unit_count``) need no column in the data.
Variables of :class:`~calibopt.datasets.GeographyRules` are computed once per rule set and
cached; everything else once in all.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..datasets.dataset import Dataset
from ..datasets.rules import GeographyRules
from ..errors import InvalidProblemError
from ..targets.constraints import Constraint, evaluate_constraint

__all__ = ["ContributionEvaluator"]

Key = int | None


class ContributionEvaluator:
    """Household contributions of (variable, domain) pairs, cached per rule set.

    Parameters
    ----------
    dataset
        The unit data.
    rules
        Geography-dependent variables (optional).

    Attributes
    ----------
    rule_calls : Counter
        How many times the rules callback ran for each rule-set key.
    """

    def __init__(self, dataset: Dataset, rules: GeographyRules | None = None) -> None:
        self.dataset = dataset
        self.rules = rules
        self.rule_calls: Counter[int] = Counter()
        self._rule_values: dict[int, dict[str, np.ndarray]] = {}
        self._masks: dict[tuple, np.ndarray] = {}
        self._contrib: dict[tuple, np.ndarray] = {}

    # ------------------------------------------------------------------ variables
    def depends_on_geography(self, variable: str, domain: tuple[Constraint, ...]) -> bool:
        """True when the variable or a domain constraint is a rules variable."""
        if self.rules is None:
            return False
        names = {variable, *(c[0] for c in domain)}
        return bool(names & set(self.rules.variables))

    def entity_of(self, variable: str, where: str) -> str:
        """The entity of a variable (rules variables, dataset variables, ``<entity>_count``)."""
        if self.rules is not None and variable in self.rules.variables:
            return self.rules.variables[variable]
        if variable in self.dataset.variables:
            return self.dataset.entity_of(variable)
        if variable.endswith("_count") and variable[: -len("_count")] in self.dataset.entities:
            return variable[: -len("_count")]
        raise InvalidProblemError(
            f"{where}: unknown variable {variable!r}: it is not in the dataset "
            f"(variables: {sorted(self.dataset.variables)[:25]}), not an entity count "
            f"(<entity>_count for entities {list(self.dataset.entities)}), and not computed by "
            f"the geography rules ({sorted(self.rules.variables) if self.rules else 'none'})."
        )

    def values(self, variable: str, key: Key, where: str) -> np.ndarray:
        """The variable on its entity (under rule set ``key`` when it is a rules variable)."""
        if self.rules is not None and variable in self.rules.variables:
            return self._rules_for(key)[variable]
        if variable in self.dataset.variables:
            return self.dataset.get(variable)
        return np.ones(self.dataset.n(self.entity_of(variable, where)))

    def _rules_for(self, key: Key) -> dict[str, np.ndarray]:
        if key is None:
            raise InvalidProblemError("internal: a rules variable was asked without a rule set.")
        if key not in self._rule_values:
            self.rule_calls[key] += 1
            assert self.rules is not None
            self._rule_values[key] = self.rules.evaluate(self.dataset, key)
        return self._rule_values[key]

    # ------------------------------------------------------------------ masks and contributions
    def _mask(self, constraint: Constraint, key: Key, where: str) -> tuple[str, np.ndarray]:
        var, op, text = constraint
        entity = self.entity_of(var, where)
        k = key if self.depends_on_geography(var, ()) else None
        cache_key = (var, op, text, k)
        if cache_key not in self._masks:
            values = self.values(var, k, where)
            self._masks[cache_key] = evaluate_constraint(
                values, op, text, where=f"{where}, constraint {var} {op} {text}"
            )
        return entity, self._masks[cache_key]

    def contribution(
        self, variable: str, domain: tuple[Constraint, ...], key: Key, where: str = "target"
    ) -> np.ndarray:
        """Each household's contribution (float64, one per household) to the target
        ``sum(variable | domain)`` under rule set ``key`` (None when geography-independent)."""
        k = key if self.depends_on_geography(variable, domain) else None
        cache_key = (variable, domain, k)
        cached = self._contrib.get(cache_key)
        if cached is not None:
            return cached
        ds = self.dataset
        entity = self.entity_of(variable, where)
        values = np.asarray(self.values(variable, k, where))
        if values.dtype.kind not in "biuf":
            raise InvalidProblemError(
                f"{where}: target variable {variable!r} is not numeric (dtype {values.dtype})."
            )
        values = values.astype(np.float64, copy=False)
        if domain:
            masks = [self._mask(c, k, where) for c in domain]
            if all(_contains(e, entity) for e, _ in masks):
                mask = np.ones(ds.n(entity), dtype=bool)
                for e, m in masks:
                    mask &= m if e == entity else ds.map_to(m, e, entity)
            else:
                person = np.ones(ds.n_persons, dtype=bool)
                for e, m in masks:
                    person &= m if e == "person" else ds.map_to(m, e, "person")
                mask = (
                    person if entity == "person" else ds.map_to(person, "person", entity, how="any")
                )
            values = np.where(mask, values, 0.0)
        if entity != "household":
            values = ds.map_to(values, entity, "household", how="sum")
        if not np.all(np.isfinite(values)):
            raise InvalidProblemError(
                f"{where}: variable {variable!r} has non-finite values in the data."
            )
        self._contrib[cache_key] = values
        return values

    def clear(self) -> None:
        """Drop cached masks and contributions (the rule values stay cached)."""
        self._masks.clear()
        self._contrib.clear()


def _contains(outer: str, inner: str) -> bool:
    """True when each ``inner`` row lies in exactly one ``outer`` row (or they are equal)."""
    return outer == inner or outer == "household" or inner == "person"
