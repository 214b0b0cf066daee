# Mutant: acknowledge appended entries before they are durable.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/replication.c'; s=open(p).read()
o='''        resp->ctx = m->ctx;
        raft__send_after(r, resp); /* acknowledges durable entries */'''
assert o in s; s=s.replace(o,'''        resp->ctx = m->ctx;'''); open(p,'w').write(s)
