"""The stock train.py, dying the way a killed process does (os._exit: no cleanup, no flush) right after a chosen
event of a chosen epoch, so that resume tests interrupt a run at an exact point instead of racing a timer.

    python crash_train.py TREE EVENT EPOCH [train.py options...]

EVENT: `results` (the epoch's results.csv row is written, its checkpoint not yet) or `checkpoint` (last.pt written).
"""
import os
import sys

tree, event, crash_epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
hook = {'results': 'on_fit_epoch_end', 'checkpoint': 'on_model_save'}[event]
sys.argv = [os.path.join(tree, 'train.py'), *sys.argv[4:]]
sys.path.insert(0, tree)
import train  # noqa: E402
from utils.callbacks import Callbacks  # noqa: E402


def die(*args):
    if args[1] == crash_epoch:  # both hooks pass the epoch second
        os._exit(17)


callbacks = Callbacks()
# armed at the start of training, after train.py registered its loggers: runs after they wrote the epoch's row
callbacks.register_action('on_train_start', callback=lambda: callbacks.register_action(hook, callback=die))
train.main(train.parse_opt(), callbacks)
sys.exit(3)  # finished without reaching the crash point
