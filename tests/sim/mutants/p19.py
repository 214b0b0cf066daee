# Mutant: a transaction's compare on mod_index always holds when the entry is applied (a CAS from a stale read overwrites a newer write).
# Applied to a copy of the tree by scripts/sim-teeth.sh; never to the real one.
p='src/kv/kv_apply.c'; s=open(p).read()
o='''    case KV_CMP_MOD:
        x = m.mod_index;
        break;'''
assert o in s; s=s.replace(o,'''    case KV_CMP_MOD:
        return true;'''); open(p,'w').write(s)
