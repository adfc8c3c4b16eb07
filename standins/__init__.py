"""Stand-ins for the images docker-compose.yml needs, on machines that cannot pull them.

`python -m standins` makes sure the images the brokers and the app image are built from exist
in the Docker engine: an image already there is used, one that can be pulled is pulled, and
only one that can be neither is built here as a stand-in, from Debian (debootstrap) and
Kafka's jars on Maven Central. Each stand-in's Dockerfile says what it does not prove.
"""
