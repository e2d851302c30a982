# A minimal etcd image for the container test, FROM scratch: Debian's etcd binary and the libraries
# `ldd` lists (scripts/build-images copies them into the context). Not for production.
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/usr/bin/etcd"]
