"""The `hubtfx` command line: `commands` builds the parser and runs a command; the cluster commands (`compile`,
`schedule`) live in hubtfx.kubeflow.cli."""
