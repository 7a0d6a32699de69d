// An application's own page using the React widget: bundled by the e2e test with vite (React
// and the component together, as an application would ship them) and served on another origin.
import { createRoot } from 'react-dom/client';
import { FeedbackWidget, type WidgetOptions } from '../widget/FeedbackWidget.js';

const options = (window as unknown as { ratchetWidget: WidgetOptions }).ratchetWidget;
createRoot(document.getElementById('root')!).render(
  <main>
    <p>An answer from the application.</p>
    <FeedbackWidget {...options} />
  </main>,
);
