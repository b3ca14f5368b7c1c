""":class:`HierarchicalSynthesizer`: households, then tax units, then persons.

Top-down, each level a :class:`~calibopt.synthesis.Synthesizer`:

1. households: their variables and their number of units (tax units);
2. units given their household: the number of members of each role (spouse, dependants) and
   the unit's variables;
3. persons given their unit and household, in passes: the household head; the heads of the
   other units (given the household head); then each other role in order (given the unit
   head and the first member of each earlier role: a dependant's age given both parents').

What holds by construction, and is checked after every batch (an error if not): each unit
has exactly one head; each household exactly one household head; sizes and counts agree;
every aggregate (tax-unit income = the sum of its members', household income = the sum of
its persons') is recomputed from the persons; a district lies in its state
(``state_fips = congressional_district_geoid // 100``). Relationship rules (spouse and
dependant ages) are repaired after the person passes with
:func:`~calibopt.synthesis.enforce_hierarchy` and then checked: the repairs made are in
:attr:`HierarchicalSynthesizer.last_report`.

Generation runs in batches of households, each from its own seed stream (``SeedSequence([seed,
batch])``): memory is that of one batch plus the output, and the same seed and batch size give
the same data in any process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..datasets.dataset import GEOGRAPHY_VARIABLES, Dataset
from ..datasets.rules import GeographyRules
from ..errors import CalibrationError, InvalidProblemError
from ..validate import integer
from .assemble import assemble, check_generated, repair
from .model_file import read_model_file, write_model_file
from .model_spec import ModelSpec
from .structure import Layout
from .synthesizer import Synthesizer

__all__ = ["HierarchicalSynthesizer"]

_FORMAT = "calibopt.synthesis.HierarchicalSynthesizer/1"
STATE, DISTRICT = GEOGRAPHY_VARIABLES


class HierarchicalSynthesizer:
    """Synthesise whole households: household > unit (tax unit) > person.

    Parameters
    ----------
    group
        The group entity between household and person (``"tax_unit"``).
    role
        Person column naming each member's role; its first category (or ``head``) is the
        unit head.
    head
        The head's role value.
    household_head
        Boolean person column marking the household head (recomputed: the head of unit 0),
        or None.
    aggregates
        ``{variable: person variables summed}`` for household or unit variables that are
        sums over their persons (``None`` instead of a list: the number of persons). They
        are not modelled; they are recomputed from the generated persons.
    rules
        Relationship rules repaired and checked after the person passes (e.g.
        ``[SpouseAgeGap(max_years=20), ChildAgeGap(min_years=15)]``).
    exclude
        Variables not modelled and not generated.
    weight
        The household weight column: generated households share the training total equally
        (calibration then sets them).
    categorical
        Numeric variables that are categories (default: the geography codes).
    model, **options
        The :class:`~calibopt.synthesis.Synthesizer` model of every level and its options.
    """

    def __init__(
        self,
        *,
        group: str = "tax_unit",
        role: str = "role",
        head: Any = "head",
        household_head: str | None = "is_household_head",
        aggregates: Mapping[str, Sequence[str] | None] | None = None,
        rules: Iterable[Any] = (),
        exclude: Iterable[str] = (),
        weight: str | None = "household_weight",
        categorical: Iterable[str] = GEOGRAPHY_VARIABLES,
        model: str = "cart",
        **options: Any,
    ) -> None:
        self.spec = ModelSpec(
            group=group,
            role=role,
            head=head,
            household_head=household_head,
            aggregates={k: (None if v is None else list(v)) for k, v in (aggregates or {}).items()},
            exclude=list(exclude),
            weight=weight,
            categorical=list(categorical),
            model=model,
            options=dict(options),
        )
        self.rules = list(rules)
        Synthesizer(["x"], model=model, **options)  # validates model and options now
        self.models: dict[str, Synthesizer] = {}
        self.last_report: pd.DataFrame | None = None

    # ------------------------------------------------------------------ fit
    def fit(
        self, dataset: Dataset, *, rules: GeographyRules | None = None
    ) -> HierarchicalSynthesizer:
        """Fit every level on a dataset (household, ``group`` and person tables).

        Parameters
        ----------
        dataset
            The training data.
        rules
            Geography rules whose variables (benefits, taxes) are computed, not modelled:
            pass the same rules to :meth:`generate` to compute them for the synthetic
            households.

        Raises
        ------
        InvalidProblemError
            A missing table or column, a unit without exactly one head, an aggregate that
            names a non-person variable.
        """
        spec = self.spec
        spec.learn(dataset, rules)
        self.models = {}
        for name, (frame, targets, conditions) in spec.training_frames(dataset).items():
            synth = Synthesizer(
                targets,
                conditions,
                model=spec.model,
                categorical=spec.categorical_in(frame),
                **spec.options,
            )
            self.models[name] = synth.fit(frame)
        return self

    # ------------------------------------------------------------------ generate
    def _check_fitted(self) -> None:
        if not self.models:
            raise InvalidProblemError("the synthesizer is not fitted: call fit(dataset) first.")

    def batches(
        self,
        n_households: int,
        seed: Any = 0,
        *,
        batch_size: int = 100_000,
        rules: GeographyRules | None = None,
    ) -> Iterator[Dataset]:
        """Generate ``n_households`` households as a sequence of datasets of at most
        ``batch_size`` households each (ids continue across batches)."""
        self._check_fitted()
        n = integer("n_households", n_households, low=1)
        size = integer("batch_size", batch_size, low=1)
        base = integer("seed", seed, low=0)
        offsets = np.zeros(3, dtype=np.int64)
        for b, start in enumerate(range(0, n, size)):
            rng = np.random.default_rng(np.random.SeedSequence([base, b]))
            ds, report = self._batch(min(size, n - start), rng, offsets, n, rules)
            offsets += [ds.n_households, ds.n(self.spec.group), ds.n_persons]
            self.last_report = report if b == 0 else _add_reports(self.last_report, report)
            yield ds

    def generate(
        self,
        n_households: int,
        seed: Any = 0,
        *,
        batch_size: int = 100_000,
        rules: GeographyRules | None = None,
    ) -> Dataset:
        """Generate ``n_households`` households as one :class:`~calibopt.datasets.Dataset`.

        Parameters
        ----------
        n_households
            Households to generate.
        seed
            Non-negative integer; the same seed and batch size give identical data.
        batch_size
            Households per batch (memory: one batch plus the output).
        rules
            Geography rules to compute their variables under each household's home state.
        """
        parts = list(self.batches(n_households, seed, batch_size=batch_size, rules=rules))
        if len(parts) == 1:
            return parts[0]
        tables = {
            e: pd.concat([p.table(e) for p in parts], ignore_index=True) for e in parts[0].entities
        }
        return Dataset(tables, period=parts[0].period, name=parts[0].name)

    def _batch(
        self,
        n: int,
        rng: np.random.Generator,
        offsets: np.ndarray,
        n_total: int,
        rules: GeographyRules | None,
    ) -> tuple[Dataset, pd.DataFrame]:
        spec, models = self.spec, self.models
        hh = models["household"].generate(n=n, seed=rng)
        n_units = hh.pop(spec.UNITS).to_numpy(dtype=np.int64)
        units = spec.unit_conditions(hh, n_units)
        unit_out = models["unit"].generate(units, seed=rng)
        counts = unit_out[spec.count_columns].to_numpy(dtype=np.int64)
        layout = Layout.from_counts(n_units, counts)
        units = pd.concat([units, unit_out], axis=1)
        persons = spec.generate_persons(models, layout, units, rng)
        flat, repairs = repair(spec, persons, layout, self.rules, rng)
        ds = assemble(spec, hh, units, flat, layout, offsets, n_total, rules)
        checks = self.check(ds)
        if checks["violations"].any():
            bad = checks.loc[checks["violations"] > 0].to_dict("records")
            raise CalibrationError(f"generated data break hierarchy rules: {bad} (a defect).")
        return ds, repairs

    def check(self, dataset: Dataset) -> pd.DataFrame:
        """Violations of every rule that generated data must satisfy (one row per rule)."""
        return check_generated(self.spec, dataset, self.rules)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write every level's model and the layout to one ``.npz`` file (no pickle)."""
        self._check_fitted()
        meta: dict[str, Any] = {"format": _FORMAT, "spec": self.spec.to_json(), "models": {}}
        arrays: dict[str, np.ndarray] = {}
        for name, synth in self.models.items():
            m, a = synth.state()
            meta["models"][name] = m
            arrays |= {f"{name}/{k}": v for k, v in a.items()}
        meta["rules"] = [[type(r).__name__, r.__dict__] for r in self.rules]
        write_model_file(path, meta, arrays, overwrite=overwrite, default=_json_default)

    @classmethod
    def load(cls, path: str | os.PathLike) -> HierarchicalSynthesizer:
        """Read a file written by :meth:`save`."""
        from . import rules as rule_module

        meta, arrays = read_model_file(path, "HierarchicalSynthesizer", _FORMAT)
        out = cls.__new__(cls)
        out.spec = ModelSpec.from_json(meta["spec"])
        out.rules = [getattr(rule_module, name)(**args) for name, args in meta["rules"]]
        out.models = {}
        for name, m in meta["models"].items():
            prefix = f"{name}/"
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            out.models[name] = Synthesizer.from_state(m, own)
        out.last_report = None
        return out

    def __repr__(self) -> str:
        levels = ", ".join(self.models) if self.models else "not fitted"
        return f"HierarchicalSynthesizer(model={self.spec.model!r}, levels: {levels})"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot save {value!r}")


def _add_reports(a: pd.DataFrame | None, b: pd.DataFrame) -> pd.DataFrame:
    if a is None:
        return b
    out = a.copy()
    for col in ("violations_before", "rows_changed", "violations_after"):
        out[col] = a[col].to_numpy() + b[col].to_numpy()
    return out
