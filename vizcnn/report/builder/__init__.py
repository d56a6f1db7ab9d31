"""The report's builder: plan the artifacts, compute what the folder lacks, assemble the pages.

`plan` (inputs checked, artifacts and their keys), `compute` (each kind of artifact with the
techniques), `ablation` (the ablation artifact from a `vizcnn ablate` results.json), `store`
(the report folder: artifacts in the run store's way, pages, manifest), `assemble` (stored
artifacts to `vizcnn.report.html.site` dataclasses) and `stages` (`build_report`: the stages in
order, then the pages).
"""
