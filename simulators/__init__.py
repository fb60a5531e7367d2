"""Simulated devices for giamsat: message builders (`messages`), the demo registry (`demo`), a
fleet with realistic movement (`fleet`) and a runner that publishes it over MQTT (`runner`, `cli`).
"""
