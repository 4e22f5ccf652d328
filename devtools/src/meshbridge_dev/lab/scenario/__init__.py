"""What a lab is made of: the intents, read through meshbridge itself (``intents``, the one
module that imports meshbridge); the plan of clusters, app instances and outside services drawn
from them (``plan``); which discovered instances run (``instances``); and the install of a
cluster that ran Istio before meshbridge (``existing``)."""
