#!/usr/bin/env python3
"""Independent implementation of ringlb's rendezvous and Maglev routing, written from
docs/algorithm.md sections 1, 2, 10 and 11 alone (not from the TypeScript).

Usage: balance.py CONFIG.json < addresses
CONFIG: {"algorithm": "rendezvous"|"maglev", "tableSize": 65537, "ipv4Prefix": 32,
         "ipv6Prefix": 64, "backends": [{"id": ..., "weight": ...}], "down": [ids]}
Prints one line per address: the address, then every eligible backend in failover order.
Standard library only."""
import heapq
import ipaddress
import json
import math
import struct
import sys

MASK = 0xFFFFFFFF


def murmur3(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32 (section 1)."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & MASK
    rotl = lambda x, r: ((x << r) | (x >> (32 - r))) & MASK
    n = len(data) // 4 * 4
    for i in range(0, n, 4):
        k = int.from_bytes(data[i:i + 4], 'little')
        k = rotl((k * c1) & MASK, 15)
        h ^= (k * c2) & MASK
        h = (rotl(h, 13) * 5 + 0xE6546B64) & MASK
    tail = data[n:]
    if tail:
        k = int.from_bytes(tail, 'little')
        k = rotl((k * c1) & MASK, 15)
        h ^= (k * c2) & MASK
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK
    h ^= h >> 16
    return h


def key_hash(text: str, v4prefix: int, v6prefix: int) -> int:
    """Section 2: parse, fold IPv4-mapped IPv6 to IPv4, mask, murmur3."""
    addr = ipaddress.ip_address(text.split('%')[0])
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    raw = addr.packed
    prefix = v4prefix if len(raw) == 4 else v6prefix
    bits = len(raw) * 8
    value = int.from_bytes(raw, 'big') >> (bits - prefix) << (bits - prefix) if prefix > 0 else 0
    return murmur3(value.to_bytes(len(raw), 'big'))


def rendezvous_order(backends, eligible, k: int):
    """Section 10: score = w / -ln((r + 0.5) / 2^32), r = murmur3(le32(K), murmur3(id))."""
    scored = []
    for b in backends:
        if b['weight'] == 0 or b['id'] not in eligible:
            continue
        r = murmur3(struct.pack('<I', k), murmur3(b['id'].encode()))
        h = (r + 0.5) / 2 ** 32
        scored.append((-(b['weight'] / -math.log(h)), b['id'].encode(), b['id']))
    return [entry[2] for entry in sorted(scored)]


def maglev_table(backends, m: int):
    """Section 11 steps 1-4: permutations, weighted turns in (round, id) order, fill."""
    ordered = sorted(backends, key=lambda b: b['id'].encode())
    wmax = max([b['weight'] for b in ordered] + [0])
    table = [None] * m
    if wmax == 0:
        return table
    perms = {}
    for i, b in enumerate(ordered):
        if b['weight'] == 0:
            continue
        data = b['id'].encode()
        perms[i] = [murmur3(data, 1) % m, murmur3(data, 2) % (m - 1) + 1, 0]  # offset, skip, j
    # Each backend's turns in (round, index) order: a priority queue of its next turn.
    turns = {i: 0 for i in perms}
    queue = [((wmax + ordered[i]['weight'] - 1) // ordered[i]['weight'], i) for i in perms]
    heapq.heapify(queue)
    filled = 0
    while filled < m:
        _, i = heapq.heappop(queue)
        offset, skip, j = perms[i]
        while table[(offset + j * skip) % m] is not None:
            j += 1
        table[(offset + j * skip) % m] = ordered[i]['id']
        perms[i][2] = j + 1
        filled += 1
        turns[i] += 1
        w = ordered[i]['weight']
        heapq.heappush(queue, (((turns[i] + 1) * wmax + w - 1) // w, i))
    return table


def maglev_order(table, eligible, k: int):
    """Section 11 lookup: entry K mod M, then forward with wrap, distinct eligible ids."""
    m = len(table)
    seen = []
    for step in range(m):
        owner = table[(k % m + step) % m]
        if owner is not None and owner in eligible and owner not in seen:
            seen.append(owner)
            if len(seen) == len(eligible):
                break
    return seen


def main() -> None:
    config = json.load(open(sys.argv[1]))
    backends = config['backends']
    down = set(config.get('down', []))
    eligible = {b['id'] for b in backends if b['weight'] > 0 and b['id'] not in down}
    v4, v6 = config.get('ipv4Prefix', 32), config.get('ipv6Prefix', 64)
    table = maglev_table(backends, config.get('tableSize', 65537)) if config['algorithm'] == 'maglev' else None
    out = []
    for line in sys.stdin:
        text = line.strip()
        if not text:
            continue
        k = key_hash(text, v4, v6)
        order = maglev_order(table, eligible, k) if table is not None else rendezvous_order(backends, eligible, k)
        out.append(' '.join([text] + order))
    sys.stdout.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    main()
