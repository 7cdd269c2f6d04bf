"""Launchers: command lines and batch scripts that start runs on Cloud TPU VMs and SLURM."""
