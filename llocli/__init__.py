"""`llo-docker`: the LLO Docker command for people (also `kubectl llo` as a kubectl plugin).

`llo-docker logs SCD` prints or follows a component's container output from its edge box,
`llo-docker describe SCD` shows its state on one screen. Kubernetes is reached through the
user's own `kubectl` (kubeconfig, context, auth plugins: whatever kubectl does), the IE through
its IE Docker API with the token the hooks use (Secret `llo-ie-tokens`).
"""
