"""benchopt dataset: a problem saved by ``calibopt.studies.save_problem`` (e.g. real data,
or ``OUT/problems/*.npz`` of a ``calibopt compare --out OUT`` study):
``-d "calibopt-file[path=/abs/path/problem.npz]"``."""

from benchopt import BaseDataset


class Dataset(BaseDataset):
    name = "calibopt-file"
    requirements = ["pip:calibopt"]
    parameters = {"path": [""]}

    def get_data(self):
        from calibopt.studies import load_problem, problem_meta

        return dict(
            problem=load_problem(self.path), provenance=problem_meta(self.path)["provenance"]
        )

    def skip(self):  # pragma: no cover - benchopt calls it before get_data
        return (not self.path), "give path=... to a saved problem (.npz)"
