"""Backbone f, label-cleaning network g and classifier h of Veit et al. (CVPR 2017)."""
