"""Real driving scenarios from the SUMO networks shipped in the ``eclipse-sumo`` wheel (docs/design.md §9).

Modules: ``nets`` (the shipped networks and SUMO command lines), ``sumo_sim`` (headless 0.1 s simulation and
recording, SUMO → project geometry), ``inject`` (parked cars, crossing pedestrians, cut-ins), ``windows`` (ego
windows and quality filters), ``labels`` (CoC auto-labels), ``schema`` (the ``Scenario`` record and its Parquet
schema: ``write_scenarios`` / ``read_scenarios``), ``check`` (the label validator), ``build`` (the dataset
builder), ``stats`` and ``cli`` (``rlpost data build | stats | check``).
Nothing is imported here so that ``import rlpost.scenarios.schema`` stays light.
"""
