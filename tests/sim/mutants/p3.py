# Mutant: keep a conflicting suffix instead of truncating it.
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/raft/replication.c'; s=open(p).read()
o='''            if (c <= raft__log_last(l))
                raft__log_truncate(r, c);'''
assert o in s; s=s.replace(o,'''            if (c <= raft__log_last(l))
                c = raft__log_last(l) + 1;
            if (c > m->index + m->n_entries)
                goto done;'''); 
o='''        uint64_t last_new = m->index + m->n_entries;'''
assert o in s; s=s.replace(o,'''    done:;
        uint64_t last_new = m->index + m->n_entries;''')
open(p,'w').write(s)
