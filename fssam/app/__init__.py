"""A web app (Gradio) for segmenting your own images: prompt 1-5 supports with clicks, a
box, a scribble or a painted mask (SAM 2 shows the support mask at once), then segment
queries with FSSAM or HMNet. ``python -m fssam.app --help``; ``make app``."""
