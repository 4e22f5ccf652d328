"""Level 3: Istio's own tools (istioctl analyze and validate) judge what meshbridge renders."""
