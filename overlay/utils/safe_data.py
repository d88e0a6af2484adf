# Plain data a pickle may rebuild (utils/safe_unpickler.py): containers, bytes, paths and numpy arrays of numbers
#
# numpy needs care: a dtype's state decides how an array's bytes are read, so a crafted one (a structured dtype
# holding objects, its flags cleared) turns file bytes into object pointers; np.dtype(..., copy=False) hands out
# numpy's own singleton, whose state would then change for the whole process. Only plain number dtypes, fresh
# copies, and their canonical state are accepted; an array's bytes must be exactly what its shape needs.
import math
import pathlib
import re
from collections import OrderedDict

import numpy as np

from utils.safe_unpickler import Policy, Refused, with_build

PLAIN_DTYPE = re.compile(r'[<>|=]?(b1|\?|[iu][1248]|f[248]|c8|c16)')
_core = getattr(np, '_core', None) or np.core  # numpy 2 moved numpy.core to numpy._core
_reconstruct, _scalar = _core.multiarray._reconstruct, _core.multiarray.scalar


def _tuple_args(name, *kinds):
    def check(*args):
        if len(args) > len(kinds) or not all(type(a) is k for a, k in zip(args, kinds)):
            raise Refused(f'it calls {name}{args!r:.60}')
        return args
    return check


def rebuild_ordered_dict(*args):
    _tuple_args('collections.OrderedDict', list)(*args)
    return OrderedDict(*args)


def rebuild_set(kind):
    def rebuild(*args):
        _tuple_args(f'builtins.{kind.__name__}', list)(*args)
        return kind(*args)
    return rebuild


def rebuild_bytes(text, encoding='latin1'):
    # protocol 2 writes bytes as _codecs.encode(text, 'latin1'): as many bytes as the text has characters
    if type(text) is not str or encoding not in ('latin1', 'latin-1'):
        raise Refused(f'it calls _codecs.encode{(text, encoding)!r:.60}')
    return text.encode('latin1')


def rebuild_path(cls):
    # pathlib pickles as cls(*parts); a Windows path read here is kept as a pure path (no file system access)
    kind = pathlib.PureWindowsPath if cls is pathlib.WindowsPath else cls

    def rebuild(*parts):
        if not all(type(p) is str for p in parts):
            raise Refused(f'it calls {cls.__name__}{parts!r:.60}')
        return kind(*parts)
    return rebuild


class NumpyData:
    """Rebuilders of numpy dtypes, arrays and scalars; objects=True also allows object arrays whose items are the
    (already checked) objects of the same pickle, as np.save writes a dict (label caches)."""

    def __init__(self, objects=False):
        self.objects = objects

    def is_plain(self, dtype):
        if not isinstance(dtype, np.dtype) or dtype.fields is not None or dtype.subdtype is not None:
            return False
        return bool(PLAIN_DTYPE.fullmatch(dtype.str)) or (self.objects and dtype.str == '|O')

    def dtype(self, name, align=False, copy=True):
        plain = type(name) is str and (PLAIN_DTYPE.fullmatch(name) or (self.objects and name in ('O', 'O4', 'O8')))
        if not plain or align is not False or copy is not True:  # copy=False returns numpy's shared singleton
            raise Refused(f'it builds numpy.dtype{(name, align, copy)!r:.60} (only fresh plain number dtypes)')
        return with_build(np.dtype(name, False, True), self.dtype_state)

    @staticmethod
    def dtype_state(dtype, state):
        canonical = [dtype.newbyteorder(order).__reduce__()[2] for order in '<>|=']
        if state not in canonical:
            raise Refused(f'it sets numpy.dtype {dtype} to the state {state!r:.80} (not a plain dtype\'s)')
        dtype.__setstate__(state)

    def array(self, cls, shape, typecode):
        if cls is not np.ndarray or shape != (0,) or typecode != b'b':
            raise Refused(f'it calls numpy _reconstruct{(cls, shape, typecode)!r:.60}')
        return with_build(_reconstruct(np.ndarray, (0,), b'b'), self.array_state)

    def array_state(self, array, state):
        ok = type(state) is tuple and len(state) == 5
        if ok:
            version, shape, dtype, fortran, data = state
            ok = (version == 1 and type(shape) is tuple and all(type(n) is int and n >= 0 for n in shape)
                  and type(fortran) is bool and self.is_plain(dtype))
        if ok:
            count = math.prod(shape)
            ok = (type(data) is list and len(data) == count) if dtype.hasobject else \
                (type(data) is bytes and len(data) == count * dtype.itemsize)
        if not ok:
            raise Refused(f'it sets a numpy array to the state {state!r:.80} (plain numbers, data as long as the '
                          f'shape says)')
        array.__setstate__(state)

    def scalar(self, dtype, data=None):
        if not self.is_plain(dtype) or dtype.hasobject or type(data) is not bytes or len(data) != dtype.itemsize:
            raise Refused(f'it calls numpy scalar{(dtype, data)!r:.60}')
        return _scalar(dtype, data)


def plain_data_policy(objects=False):
    """Containers, bytes, paths and numpy numbers (objects=True: object arrays of those too); nothing else."""
    numpy = NumpyData(objects)
    calls = {OrderedDict: rebuild_ordered_dict, set: rebuild_set(set), frozenset: rebuild_set(frozenset),
             _codecs_encode(): rebuild_bytes, _reconstruct: numpy.array, np.dtype: numpy.dtype, _scalar: numpy.scalar}
    names = {'collections.OrderedDict': OrderedDict, 'builtins.set': set, 'builtins.frozenset': frozenset,
             '_codecs.encode': _codecs_encode(), 'numpy.ndarray': np.ndarray, 'numpy.dtype': np.dtype}
    for package in ('numpy.core', 'numpy._core'):  # numpy 1 and numpy 2 name the same functions
        names[f'{package}.multiarray._reconstruct'] = _reconstruct
        names[f'{package}.multiarray.scalar'] = _scalar
    for cls in (pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath):
        names[f'pathlib.{cls.__name__}'] = cls
        calls[cls] = rebuild_path(cls)
    return Policy(names, calls)


def _codecs_encode():
    import _codecs
    return _codecs.encode


def literal(text, what):
    """A Python literal written as text (a dict of class names in a model file's metadata); never evaluated."""
    import ast
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f'{what} is not a Python literal: {str(text)!r:.80}; refused (it is never evaluated)') from None
