"""Tools around the core packages: data checks, synthetic datasets, the COCO converter,
machine checks, weight downloads and benchmarks. Nothing in ``fssam.data``,
``fssam.models`` or ``fssam.engine`` imports them."""
