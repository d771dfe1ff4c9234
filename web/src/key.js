// Where the page's API key comes from: ?key= in the URL (what the demo prints), else
// localStorage, else a form. A key from the URL is saved and then removed from the address
// bar, so it does not linger in history or on a wall screen's photo.
// `storage` names the localStorage entry: the dashboard (the operations centre's key) and the
// department workbench keep theirs apart, so signing in to one never signs out the other.

const STORAGE = 'ops.apiKey';

export function keyFromPage(storage = STORAGE) {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get('key');
  if (fromUrl) {
    saveKey(fromUrl, storage);
    url.searchParams.delete('key');
    history.replaceState(null, '', url);
    return fromUrl;
  }
  return safeStorage(() => localStorage.getItem(storage));
}

export function saveKey(key, storage = STORAGE) {
  safeStorage(() => localStorage.setItem(storage, key));
}

export function forgetKey(storage = STORAGE) {
  safeStorage(() => localStorage.removeItem(storage));
}

/** Shows the key form (with why, if a key was refused); resolves with the key typed. */
export function askForKey(reason = '', storage = STORAGE) {
  const dialog = document.getElementById('key-dialog');
  const form = document.getElementById('key-form');
  const input = document.getElementById('key-input');
  document.getElementById('key-reason').textContent = reason;
  input.value = '';
  return new Promise((resolve) => {
    // Handler properties, not listeners: asking again replaces them instead of piling up.
    form.onsubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      saveKey(key, storage);
      dialog.close();
      resolve(key);
    };
    // Escape would close the dialog and leave the page without a key.
    dialog.oncancel = (event) => event.preventDefault();
    dialog.showModal();
    input.focus();
  });
}

function safeStorage(action) {
  // Private windows and locked-down kiosks may refuse storage; the key then lasts a page.
  try {
    return action();
  } catch {
    return null;
  }
}
