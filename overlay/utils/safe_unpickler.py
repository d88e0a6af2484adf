# A pickle reader that rebuilds only what a policy allows (utils/safe_load.py: YOLOv5 checkpoints, label caches)
#
# Unpickling runs code through a handful of opcodes: GLOBAL/STACK_GLOBAL import any name, REDUCE calls it with
# arguments the file chooses, NEWOBJ/INST/OBJ construct, BUILD hands a state to __setstate__ or __dict__, and
# APPEND(S)/SETITEM(S)/ADDITEMS call methods of whatever object sits on the stack. This reader is Python's own
# (pickle._Unpickler) with each of those routed through a policy:
#   - a global resolves only to a name the policy lists;
#   - REDUCE calls only the policy's rebuild functions, each of which checks its arguments (what it allocates is
#     paid for by bytes in the file); classes are never called;
#   - NEWOBJ creates only the policy's classes, by __new__ without arguments, as pickle rebuilds plain objects;
#   - BUILD gives state once, and only to an object this load created, through the policy's check;
#   - items go only into plain lists, dicts and sets; copyreg extensions and out-of-band buffers are refused.
# Anything else raises Refused, which names the global, call or state that was refused.
import _compat_pickle
import pickle
import types
from collections import OrderedDict

DICTS = (dict, OrderedDict)


class Refused(pickle.UnpicklingError):
    """What the file needs that the policy does not allow (the message names it)."""


def qualified_name(obj):
    return f'{getattr(obj, "__module__", None) or type(obj).__module__}.{getattr(obj, "__qualname__", repr(obj))}'


class Policy:
    """What a file may rebuild. globals: {'module.name': object}; calls: {function: rebuild(*args) -> object}
    (may return (object, build) to accept one BUILD, build(object, state)); classes: {class: build(object, state)}."""

    def __init__(self, globals_=None, calls=None, classes=None):
        self.globals = dict(globals_ or {})
        self.calls = dict(calls or {})
        self.classes = dict(classes or {})

    def resolve(self, module, name):
        full = f'{module}.{name}'
        if full not in self.globals:
            raise Refused(f'it needs {full}')
        return self.globals[full]

    def persistent(self, pid, load):
        raise Refused(f'it references external data {pid!r}')


def _refused_opcode(name):
    def refuse(self):
        raise Refused(f'it uses the pickle opcode {name}, which no YOLOv5 file needs')
    return refuse


class RestrictedUnpickler(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, policy, **kwargs):
        super().__init__(file, **kwargs)
        self.policy = policy
        self._unbuilt = {}  # id -> (object, build): objects this load created that may receive their state once
        self._persistent_load = None

    # names: only the policy's (protocol 0-2 names are mapped as pickle maps them: __builtin__ -> builtins)
    def find_class(self, module, name):
        if self.proto < 3 and self.fix_imports:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        return self.policy.resolve(module, name)

    def _created(self, obj, build):
        if build is not None:
            self._unbuilt[id(obj)] = (obj, build)
        return obj

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        rebuild = self.policy.calls.get(func) if _hashable(func) else None
        if rebuild is None:
            what = 'a class is rebuilt from its saved state, never called' if isinstance(func, type) else \
                'not a rebuild function'
            raise Refused(f'it calls {qualified_name(func)}{_short(args)} ({what})')
        if not isinstance(args, tuple):
            raise Refused(f'it calls {qualified_name(func)} with arguments that are not a tuple')
        result = rebuild(*args)
        obj, build = result if isinstance(result, _WithBuild) else (result, None)
        self.stack[-1] = self._created(obj, build)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def _new(self, cls, args, kwargs):
        build = self.policy.classes.get(cls) if _hashable(cls) else None
        if build is None:
            raise Refused(f'it creates {qualified_name(cls)}, which no YOLOv5 file holds')
        if args or kwargs:
            raise Refused(f'it creates {qualified_name(cls)} with arguments{_short(args)} (objects are rebuilt '
                          f'from their saved state only)')
        return self._created(cls.__new__(cls), build)

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, None))

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def load_build(self):
        state = self.stack.pop()
        obj = self.stack[-1]
        entry = self._unbuilt.pop(id(obj), None)
        if entry is None or entry[0] is not obj:
            raise Refused(f'it sets the state of {qualified_name(type(obj))} {_short(obj)}, an object it did not '
                          f'create or has already given a state')
        entry[1](obj, state)

    dispatch[pickle.BUILD[0]] = load_build

    # containers: plain ones only (SETITEM on anything else reaches arbitrary __setitem__ code)
    def _target(self, kinds, opcode):
        target = self.stack[-1]
        if type(target) not in kinds:
            raise Refused(f'it applies {opcode} to {qualified_name(type(target))}, not a plain container')
        return target

    def load_append(self):
        value = self.stack.pop()
        self._target((list,), 'APPEND').append(value)

    def load_appends(self):
        items = self.pop_mark()
        self._target((list,), 'APPENDS').extend(items)

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._target(DICTS, 'SETITEM')[key] = value

    def load_setitems(self):
        items = self.pop_mark()
        target = self._target(DICTS, 'SETITEMS')
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def load_additems(self):
        items = self.pop_mark()
        self._target((set,), 'ADDITEMS').update(items)

    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.ADDITEMS[0]] = load_additems

    # protocol 0/1 construction (INST, OBJ), copyreg's extension registry, text persistent ids, out-of-band buffers
    for _name in ('INST', 'OBJ', 'EXT1', 'EXT2', 'EXT4', 'PERSID', 'NEXT_BUFFER', 'READONLY_BUFFER'):
        dispatch[getattr(pickle, _name)[0]] = _refused_opcode(_name)
    del _name

    # external data (torch's storages): the policy checks the reference before the loader reads it
    @property
    def persistent_load(self):
        return lambda pid: self.policy.persistent(pid, self._persistent_load)

    @persistent_load.setter
    def persistent_load(self, load):
        self._persistent_load = load


class _WithBuild(tuple):
    """What a rebuild function returns for an object that may receive one BUILD: (object, build)."""


def with_build(obj, build):
    return _WithBuild((obj, build))



def _hashable(x):
    try:
        hash(x)
        return True
    except TypeError:
        return False


def _short(x, n=60):
    text = repr(x)
    return text if len(text) <= n else text[:n] + '...'


def pickle_module(policy):
    """A stand-in for the pickle module (torch.load's pickle_module) whose Unpickler follows policy."""
    class Unpickler(RestrictedUnpickler):
        def __init__(self, file, **kwargs):
            super().__init__(file, policy, **kwargs)

    return types.SimpleNamespace(__name__=__name__, Unpickler=Unpickler,
                                 load=lambda file, **kwargs: Unpickler(file, **kwargs).load())
