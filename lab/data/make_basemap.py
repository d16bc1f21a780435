#!/usr/bin/env python3
"""Builds lab/data/basemap-110m.json from world-atlas 2.0.2's countries-110m.json
(Natural Earth 1:110m, public domain; `npm pack world-atlas@2.0.2`).

Output: {"land": [ring, ...], "borders": [line, ...]} where each ring or line is a flat list
of centidegrees [lon, lat, lon, lat, ...]. Land rings come from the `land` object (outer
rings and holes: fill them even-odd); borders are the arcs two different countries share.
Usage: make_basemap.py countries-110m.json > basemap-110m.json
"""
import json
import sys


def decode_arcs(topo):
    sx, sy = topo["transform"]["scale"]
    tx, ty = topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x += dx
            y += dy
            pts.append((x * sx + tx, y * sy + ty))
        arcs.append(pts)
    return arcs


def arc_points(arcs, i):
    # A negative index ~i is arc i reversed.
    return arcs[i] if i >= 0 else arcs[~i][::-1]


def ring(arcs, indices):
    pts = []
    for i in indices:
        a = arc_points(arcs, i)
        # Consecutive arcs share their joining point.
        pts.extend(a[1:] if pts else a)
    return pts


def polygons(geom):
    if geom["type"] == "Polygon":
        return [geom["arcs"]]
    if geom["type"] == "MultiPolygon":
        return geom["arcs"]
    return []


def flat(pts):
    out = []
    last = None
    for lon, lat in pts:
        p = (round(lon * 100), round(lat * 100))
        if p != last:
            out.extend(p)
            last = p
    return out


def main():
    topo = json.load(open(sys.argv[1]))
    arcs = decode_arcs(topo)
    land = []
    for g in topo["objects"]["land"]["geometries"]:
        for poly in polygons(g):
            for r in poly:
                land.append(flat(ring(arcs, r)))
    # Arcs used by two different countries are borders (topojson.mesh(a !== b)).
    owners = {}
    for n, g in enumerate(topo["objects"]["countries"]["geometries"]):
        for poly in polygons(g):
            for r in poly:
                for i in r:
                    owners.setdefault(i if i >= 0 else ~i, set()).add(n)
    borders = [flat(arcs[i]) for i, o in sorted(owners.items()) if len(o) > 1]
    json.dump({"land": land, "borders": borders}, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


main()
