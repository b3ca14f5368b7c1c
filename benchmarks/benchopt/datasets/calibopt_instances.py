"""benchopt datasets: calibopt's standard instances (seeded, sized) and saved problems."""

from benchopt import BaseDataset


class Dataset(BaseDataset):
    name = "calibopt-instance"
    requirements = ["pip:calibopt"]
    parameters = {
        "kind": ["survey-margins", "local-area", "sparse-recovery", "bounded-qp", "conflicting"],
        "size": ["small"],
        "seed": [0],
    }
    test_parameters = {"kind": ["survey-margins"], "size": ["tiny"], "seed": [0]}

    def get_data(self):
        from calibopt.studies import make_instance

        inst = make_instance(self.kind, self.size, self.seed)
        return dict(problem=inst.problem, provenance=inst.provenance)
