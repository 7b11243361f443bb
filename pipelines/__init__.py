"""Diffusers pipelines of star-vsr, installed as `star_vsr.pipelines`."""
