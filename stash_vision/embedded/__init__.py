"""The embedded default: tritonserver from the nvidia-pytriton wheel, run and supervised as a child."""
