"""Score predictions with the InterRVOS protocol: metrics, an HTML report and the per-expression files."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def evaluate(split: Input[Dataset], predictions: Input[Dataset], metrics: Output[Metrics], report: Output[HTML],
             scores: Output[Dataset]):
    """Actor/Target/RVOS J, F and J&F as KFP metrics; table in the HTML report; CSV/JSON/histogram in scores."""
    from reviosa.pipelines import steps

    summary, html = steps.evaluate(split.path, predictions.path, scores.path)
    steps.write_text(report.path, html)
    for key, value in summary.items():
        metrics.log_metric(key, value)
